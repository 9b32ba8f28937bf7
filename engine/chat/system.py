"""What the machine offers a chat model: free memory, CPU threads, and whether llama.cpp can use a GPU."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from engine.cpu_threads import default_threads, usable_cores

MEMINFO = Path("/proc/meminfo")
__all__ = ["default_threads", "free_memory_bytes", "gpu_offload_available", "gpu_offload_supported", "gpu_present",
           "usable_cores"]
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
