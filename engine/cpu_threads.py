"""How many CPU threads llama.cpp work (chat, perplexity, quantize, fidelity checks) should use.

llama.cpp's threads wait for each other at every step, so one that has to share its core with another
busy process stalls them all: on 2 cores with one other busy process, 1 thread decoded 3-4x faster than 2.
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def thread_limit() -> int | None:
    """The thread count the user set for the process's math libraries ($OMP_NUM_THREADS), if any."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def default_threads(cap: int | None = 8) -> int:
    """CPU threads for llama.cpp: the usable cores that are not busy, at least 1, at most `cap` (None: no cap; for
    batch work such as quantizing and perplexity, which keeps gaining from cores where decoding stops at ~8) and
    at most $OMP_NUM_THREADS when set. The 1-minute load average stands for the other processes."""
    cores = usable_cores()
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except OSError:
        busy = 0
    threads = max(1, min(cap or cores, cores - min(busy, cores - 1)))
    limit = thread_limit()
    return min(threads, limit) if limit else threads
