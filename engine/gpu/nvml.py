"""Sampling NVIDIA GPUs through NVML (the nvidia-ml-py package, imported as `pynvml`).

`Sampler` is the one entry point: `sample()` returns a `Snapshot` of every GPU (at most once per
`min_interval`; a faster caller gets the last one back), with a short history per GPU. Fields that
never change (name, UUID, total memory, power limit, driver version) are read once and cached.
No NVML error reaches the caller: a failed call is a None field ("n/a"), and a machine without a
driver gives a Snapshot with `available` False and a message that says why.

The NVML object is injectable (any object with pynvml's functions), which is the seam the tests use;
by default `pynvml` is imported on first use, never at import time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.gpu.types import GpuProcess, GpuSample, OwnJob, Snapshot

MB = 1024 * 1024
HISTORY = 60  # samples kept per GPU (a minute at 1 Hz)
MIN_INTERVAL_S = 1.0
RETRY_INIT_S = 30.0  # a failed nvmlInit is tried again after this long
ANCESTOR_DEPTH = 4  # a job's worker processes (torchrun, accelerate) are its children or grandchildren
# NVML's return codes (pynvml's constants), so an injected object need not define them.
ERROR_NO_PERMISSION = 4
ERROR_DRIVER_NOT_LOADED = 9
ERROR_LIBRARY_NOT_FOUND = 12
TEMPERATURE_GPU = 0
CLOCK_SM = 1
CLOCK_MEM = 2


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _number(value: Any, scale: float = 1.0) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) / scale


def init_failure_message(error: BaseException) -> str:
    """Why NVML could not start, in words a user can act on."""
    code = getattr(error, "value", None)
    if code == ERROR_LIBRARY_NOT_FOUND:
        return "No NVIDIA driver found (the NVML library is not installed); training runs on the CPU."
    if code == ERROR_DRIVER_NOT_LOADED:
        return "The NVIDIA driver is not loaded; training runs on the CPU."
    if code == ERROR_NO_PERMISSION:
        return "No permission to query the NVIDIA driver (NVML)."
    return f"NVML could not start: {error}"


def parent_pid(pid: int) -> int | None:
    """The parent of a process, from /proc (None where there is no /proc or the process is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (IndexError, ValueError):
        return None


def proc_name(pid: int) -> str | None:
    """A process's short name from /proc, when NVML cannot tell it."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() or None
    except OSError:
        return None


def match_job(pid: int, own: Mapping[int, OwnJob], parent_of: Callable[[int], int | None] = parent_pid
              ) -> OwnJob | None:  # fmt: skip
    """The tunedeck job whose engine is `pid` or one of its ancestors, if any."""
    current: int | None = pid
    for _ in range(ANCESTOR_DEPTH + 1):
        if current is None or current <= 1:
            return None
        if current in own:
            return own[current]
        current = parent_of(current)
    return None


@dataclass
class _Static:
    """What is read once per GPU."""

    handle: Any
    name: str | None
    uuid: str | None
    power_limit_w: float | None
    memory_total_mb: float | None = None


class Sampler:
    """NVML sampling with cached slow fields, per-GPU history and a rate limit. Thread-safe."""

    def __init__(
        self,
        nvml: Any | None = None,
        *,
        history: int = HISTORY,
        min_interval: float = MIN_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        parent_of: Callable[[int], int | None] = parent_pid,
        name_of: Callable[[int], str | None] = proc_name,
    ) -> None:
        self._nvml = nvml
        self._history = history
        self._min_interval = min_interval
        self._clock = clock
        self._parent_of = parent_of
        self._name_of = name_of
        self._lock = threading.Lock()
        self._started = False
        self._failure: str | None = None
        self._failed_at = 0.0
        self._driver: str | None = None
        self._static: dict[int, _Static] = {}
        self._names: dict[int, str | None] = {}
        self._util: dict[int, deque[float | None]] = {}
        self._mem: dict[int, deque[float | None]] = {}
        self._last: Snapshot | None = None
        self._last_at = 0.0

    # -- NVML access -------------------------------------------------------------

    def _call(self, name: str, *args: Any) -> Any:
        """`nvml.<name>(*args)`, or None when the function is missing or fails."""
        fn = getattr(self._nvml, name, None)
        if fn is None:
            return None
        try:
            return fn(*args)
        except Exception:  # NVMLError_NotSupported, NoPermission, GpuIsLost, ...: all are "n/a"
            return None

    def _const(self, name: str, default: int) -> int:
        value = getattr(self._nvml, name, default)
        return value if isinstance(value, int) else default

    def _start(self) -> str | None:
        """Start NVML if needed; the reason it is unavailable, or None."""
        if self._started:
            return None
        if self._failure is not None and self._clock() - self._failed_at < RETRY_INIT_S:
            return self._failure
        if self._nvml is None:
            try:
                import pynvml
            except ImportError:
                return self._fail("nvidia-ml-py is not installed, so GPUs cannot be queried.")
            self._nvml = pynvml
        try:
            self._nvml.nvmlInit()
        except Exception as error:
            return self._fail(init_failure_message(error))
        self._started = True
        self._failure = None
        self._driver = _text(self._call("nvmlSystemGetDriverVersion"))
        return None

    def _fail(self, message: str) -> str:
        self._failure, self._failed_at = message, self._clock()
        return message

    def _static_of(self, index: int) -> _Static | None:
        cached = self._static.get(index)
        if cached is not None:
            return cached
        handle = self._call("nvmlDeviceGetHandleByIndex", index)
        if handle is None:
            return None
        cached = _Static(
            handle=handle,
            name=_text(self._call("nvmlDeviceGetName", handle)),
            uuid=_text(self._call("nvmlDeviceGetUUID", handle)),
            power_limit_w=_number(self._call("nvmlDeviceGetEnforcedPowerLimit", handle), 1000.0),
        )
        self._static[index] = cached
        return cached

    def _process_name(self, pid: int) -> str | None:
        if pid not in self._names:
            if len(self._names) > 4096:
                self._names.clear()
            name = _text(self._call("nvmlSystemGetProcessName", pid))
            self._names[pid] = (name.rsplit("/", 1)[-1] if name else None) or self._name_of(pid)
        return self._names[pid]

    def _processes(self, handle: Any) -> list[GpuProcess]:
        seen: dict[int, GpuProcess] = {}
        for call in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            for info in self._call(call, handle) or ():
                pid = getattr(info, "pid", None)
                if not isinstance(pid, int) or pid in seen:
                    continue
                seen[pid] = GpuProcess(pid=pid, name=self._process_name(pid),
                                       memory_mb=_number(getattr(info, "usedGpuMemory", None), MB))  # fmt: skip
        return sorted(seen.values(), key=lambda p: (-(p.memory_mb or 0.0), p.pid))

    def _gpu(self, index: int) -> GpuSample:
        static = self._static_of(index)
        if static is None:
            return GpuSample(index=index)
        handle = static.handle
        memory = self._call("nvmlDeviceGetMemoryInfo", handle)
        used = _number(getattr(memory, "used", None), MB)
        total = _number(getattr(memory, "total", None), MB)
        if total is not None and static.memory_total_mb is None:
            static.memory_total_mb = total
        util = self._call("nvmlDeviceGetUtilizationRates", handle)
        return GpuSample(
            index=index,
            name=static.name,
            uuid=static.uuid,
            util_pct=_number(getattr(util, "gpu", None)),
            memory_used_mb=used,
            memory_total_mb=static.memory_total_mb,
            temperature_c=_number(self._call("nvmlDeviceGetTemperature", handle,
                                             self._const("NVML_TEMPERATURE_GPU", TEMPERATURE_GPU))),
            power_w=_number(self._call("nvmlDeviceGetPowerUsage", handle), 1000.0),
            power_limit_w=static.power_limit_w,
            sm_clock_mhz=_number(self._call("nvmlDeviceGetClockInfo", handle, self._const("NVML_CLOCK_SM", CLOCK_SM))),
            mem_clock_mhz=_number(self._call("nvmlDeviceGetClockInfo", handle,
                                             self._const("NVML_CLOCK_MEM", CLOCK_MEM))),
            processes=self._processes(handle),
        )  # fmt: skip

    def _remember(self, gpu: GpuSample) -> None:
        util = self._util.setdefault(gpu.index, deque(maxlen=self._history))
        mem = self._mem.setdefault(gpu.index, deque(maxlen=self._history))
        util.append(gpu.util_pct)
        mem.append(gpu.memory_used_mb)
        gpu.util_history = list(util)
        gpu.mem_history = list(mem)

    def _mark(self, snapshot: Snapshot, own: Mapping[int, OwnJob]) -> Snapshot:
        for gpu in snapshot.gpus:
            for process in gpu.processes:
                process.job = match_job(process.pid, own, self._parent_of) if own else None
        return snapshot

    # -- public ------------------------------------------------------------------

    def sample(self, own: Mapping[int, OwnJob] | None = None) -> Snapshot:
        """Every GPU now (or the last snapshot when asked again within `min_interval`).

        `own` maps the pids of tunedeck's running jobs to them; their processes (and those processes'
        children) are marked with the job.
        """
        own = own or {}
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last_at < self._min_interval:
                return self._mark(self._last, own)
            snapshot = self._read()
            self._last, self._last_at = snapshot, now
            return self._mark(snapshot, own)

    def _read(self) -> Snapshot:
        failure = self._start()
        if failure is not None:
            return Snapshot(available=False, message=failure, taken_at=time.time())
        count = self._call("nvmlDeviceGetCount")
        if not isinstance(count, int):
            return Snapshot(available=False, message="NVML could not count the GPUs.", driver_version=self._driver,
                            taken_at=time.time())  # fmt: skip
        if count == 0:
            return Snapshot(available=False, message="The NVIDIA driver reports no GPU.", driver_version=self._driver,
                            taken_at=time.time())  # fmt: skip
        gpus = []
        for index in range(count):
            gpu = self._gpu(index)
            self._remember(gpu)
            gpus.append(gpu)
        return Snapshot(available=True, driver_version=self._driver, gpus=gpus, taken_at=time.time())

    def close(self) -> None:
        """Shut NVML down (a later `sample` starts it again)."""
        with self._lock:
            if self._started:
                self._call("nvmlShutdown")
            self._started = False
            self._static.clear()
            self._last = None
