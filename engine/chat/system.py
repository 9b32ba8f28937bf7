"""What the machine offers a chat model: free memory, CPU threads, and whether llama.cpp can use a GPU."""

from __future__ import annotations

import os
import sys
from pathlib import Path

MEMINFO = Path("/proc/meminfo")
FREE_MEMORY_ENV = "TUNEDECK_FREE_MEMORY"  # bytes: stands in for MemAvailable (a cap on what a model may use; tests)


def free_memory_bytes(meminfo: Path = MEMINFO) -> int | None:
    """Free memory in bytes: $TUNEDECK_FREE_MEMORY if set, else MemAvailable from /proc/meminfo; None if unknown."""
    override = os.environ.get(FREE_MEMORY_ENV, "").strip()
    if override.isdigit():
        return int(override)
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def usable_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    """CPU threads for generation: the usable cores that are not busy, at least 1, at most 8.

    llama.cpp's threads wait for each other at every step, so one that has to share its core
    with another busy process stalls them all: on 2 cores with one other busy process, 1 thread
    decoded 3-4x faster than 2. The 1-minute load average stands for the other processes.
    """
    cores = usable_cores()
    try:
        busy = int(os.getloadavg()[0] + 0.5)
    except OSError:
        busy = 0
    return max(1, min(8, cores - min(busy, cores - 1)))


def gpu_present() -> bool:
    """Whether a GPU llama.cpp could use is present: an NVIDIA device (NVML), a ROCm device node, or a Mac."""
    if sys.platform == "darwin":
        return True
    if Path("/dev/kfd").exists():
        return True
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            return pynvml.nvmlDeviceGetCount() > 0
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library
        return False


def gpu_offload_supported() -> bool:
    """Whether this llama-cpp-python build has a GPU backend (a CPU-only wheel has none)."""
    import llama_cpp

    return bool(llama_cpp.llama_supports_gpu_offload())


def gpu_offload_available() -> bool:
    """True when this llama-cpp-python build can offload layers and a GPU is there to take them."""
    return gpu_offload_supported() and gpu_present()
