#!/usr/bin/env bash
# What the test suite needs beyond the venv, installed only by `make test` (never by `make run`: a user
# launching the app must not get a workload manager): Debian's slurm-wlm and munge for tests/test_slurm.py,
# which starts a one-node cluster of its own. Only when missing, and only as root with apt; otherwise that
# test skips and says why.
set -u
if [ ! -x /usr/sbin/slurmctld ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "test deps: installing slurm-wlm and munge (apt) for the SLURM tests"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge; } >/dev/null 2>&1 \
    || echo "test deps: could not install slurm-wlm and munge; tests/test_slurm.py will skip" >&2
fi
# llm-compressor's own environment for tests/test_compress.py (engine/compress/toolenv.py: llmcompressor pins an
# older transformers than tunedeck's, so it lives in a venv of its own sharing tunedeck's torch). Built once per
# machine and tunedeck environment into ~/.cache/tunedeck (about 3 minutes and 720 MB from PyPI), a no-op after.
PY="${VENV:-.venv}/bin/python"
if [ -x "$PY" ]; then
  "$PY" -m engine.compress.toolenv --cache >/dev/null \
    || echo "test deps: could not build llm-compressor's environment; tests/test_compress.py builds it on first use" >&2
fi
exit 0
