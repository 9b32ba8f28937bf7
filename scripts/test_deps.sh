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
exit 0
