#!/usr/bin/env bash
# scripts/device_check.sh on a bare, offline lent GPU machine (the device tool's nvidia-h200: python3 with CUDA torch,
# transformers, peft and accelerate, but no trl, bitsandbytes, sqlmodel or llama-cpp-python, and no network).
# Installs the wheels carried in .whl/ into /tmp/site, builds llama-cpp-python with CUDA from the trimmed sdist
# in .whl/ in the background (while the training checks run), then runs device_check.sh with the chat check on
# .whl/demo-llama-f16.gguf. Everything it prints is also written to $OUT/device.log.
#   usage (from the repo root, as the device command): bash scripts/device_run.sh [BUDGET_S]
# .whl/ (git-ignored, carried by the device tool; 44 MB of its 64 MiB limit) holds cp312 manylinux wheels fetched
# with `pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 ...` of:
# trl, bitsandbytes (its .so files for other CUDA/ROCm versions dropped: 43 -> 8 MB), transformers, peft,
# accelerate, datasets, dill, multiprocess, fsspec, sqlmodel, sqlalchemy, greenlet, pydantic, pydantic_core,
# typing-inspection, annotated-types, platformdirs, gguf, liger-kernel, regex, diskcache, and huggingface_hub
# with its closure (httpx2, httpcore2, hf_xet, click, ...); llama-cpp-python's sdist without llama.cpp's models,
# docs, tools, tests and .git (76 -> 4 MB); and the demo model's f16 GGUF (tests' demo_gguf) for the chat check.
set -uo pipefail
BUDGET=${1:-480}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
START=$(date +%s)
exec > >(tee "$OUT/device.log") 2>&1
cd "$ROOT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "device_run: wheel install failed"; exit 1; }
export PYTHONPATH=/tmp/site:/tmp/llsite:$ROOT PYTHONUNBUFFERED=1
python3 - <<'PY'
import importlib
for name in ("torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes", "datasets", "pyarrow",
             "huggingface_hub", "liger_kernel", "sqlmodel", "triton"):
    try:
        print(f"{name} {getattr(importlib.import_module(name), '__version__', '?')}")
    except Exception as e:  # noqa: BLE001 - a report, not a check
        print(f"{name} MISSING: {e!r:.200}")
PY
echo "device_run: set-up took $(( $(date +%s) - START )) s"

# llama-cpp-python with CUDA for this card only (sm_90), without llama.cpp's common library; 12 of 16 cores.
export LLAMA_BUILT_FLAG=/tmp/llama-built
(
  tar xzf .whl/llama_cpp_python-*.tar.gz -C /tmp && cd /tmp/llama_cpp_python-* &&
  CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF \
-DCMAKE_PROJECT_llama.cpp_INCLUDE=$ROOT/scripts/llama_no_common.cmake" CMAKE_BUILD_PARALLEL_LEVEL=12 \
  python3 -m pip install -q --no-build-isolation --no-deps --no-index --target /tmp/llsite . > "$OUT/llama_build.log" 2>&1
  echo "rc=$? after $(( $(date +%s) - START )) s" >> "$OUT/llama_build.log"
  touch "$LLAMA_BUILT_FLAG"
) &

# The chat check waits for the build, but not past the budget.
export LLAMA_WAIT_S=$(( BUDGET - 60 - ($(date +%s) - START) ))
export CHAT_GGUF=$ROOT/.whl/demo-llama-f16.gguf
PY=python3 bash scripts/device_check.sh "${STEPS:-40}" "${BENCH_STEPS:-20}"
echo "device_run: llama build: $(tail -1 "$OUT/llama_build.log" 2>/dev/null)"
echo "device_run: done after $(( $(date +%s) - START )) s"
