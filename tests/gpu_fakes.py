"""A stand-in for pynvml that the GPU tests inject through `Sampler(nvml=...)`: answers per GPU from dicts,
with calls that fail (NVMLError) or are missing (a driver too old to have them), and call counts."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

MB = 1024 * 1024
NOT_SUPPORTED = 3


class NVMLError(Exception):
    """Like pynvml.NVMLError: carries NVML's return code in `value`."""

    def __init__(self, value: int) -> None:
        super().__init__(f"NVML error {value}")
        self.value = value


def gpu(name: str = "NVIDIA H200", total_mb: int = 143_771, used_mb: int = 10_240, util: int = 35,
        temp: int = 45, power_mw: int = 120_000, limit_mw: int = 700_000, sm: int = 1980, mem: int = 2619,
        processes: list[tuple[int, int | None]] | None = None) -> dict[str, Any]:  # fmt: skip
    """One fake GPU's answers; processes are (pid, used MiB or None)."""
    return {"name": name, "total": total_mb * MB, "used": used_mb * MB, "util": util, "temp": temp,
            "power": power_mw, "limit": limit_mw, "sm": sm, "mem": mem, "processes": processes or []}  # fmt: skip


class FakeNvml:
    """pynvml's functions over `gpus`; names in `fail` raise NVMLError(NOT_SUPPORTED), names in `missing`
    do not exist; `init_error` makes nvmlInit raise NVMLError(init_error)."""

    NVML_TEMPERATURE_GPU = 0
    NVML_CLOCK_SM = 1
    NVML_CLOCK_MEM = 2

    def __init__(self, gpus: list[dict[str, Any]], *, fail: set[str] | None = None, missing: set[str] | None = None,
                 init_error: int | None = None, names: dict[int, str] | None = None) -> None:  # fmt: skip
        self.gpus = gpus
        self.fail = fail or set()
        self.missing = missing or set()
        self.init_error = init_error
        self.names = names or {}
        self.calls: Counter[str] = Counter()

    def __getattribute__(self, name: str) -> Any:
        if name.startswith("nvml") and name in object.__getattribute__(self, "missing"):
            raise AttributeError(name)
        value = object.__getattribute__(self, name)
        if name.startswith("nvml") and callable(value):
            calls = object.__getattribute__(self, "calls")
            fail = object.__getattribute__(self, "fail")

            def call(*args: Any) -> Any:
                calls[name] += 1
                if name in fail:
                    raise NVMLError(NOT_SUPPORTED)
                return value(*args)

            return call
        return value

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        pass

    def nvmlSystemGetDriverVersion(self) -> str:
        return "560.35.03"

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetName(self, h: int) -> str:
        return self.gpus[h]["name"]

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return f"GPU-{h:08d}"

    def nvmlDeviceGetMemoryInfo(self, h: int) -> Any:
        g = self.gpus[h]
        return SimpleNamespace(total=g["total"], used=g["used"], free=g["total"] - g["used"])

    def nvmlDeviceGetUtilizationRates(self, h: int) -> Any:
        return SimpleNamespace(gpu=self.gpus[h]["util"], memory=0)

    def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
        return self.gpus[h]["temp"]

    def nvmlDeviceGetPowerUsage(self, h: int) -> int:
        return self.gpus[h]["power"]

    def nvmlDeviceGetEnforcedPowerLimit(self, h: int) -> int:
        return self.gpus[h]["limit"]

    def nvmlDeviceGetClockInfo(self, h: int, clock: int) -> int:
        return self.gpus[h]["sm" if clock == self.NVML_CLOCK_SM else "mem"]

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[Any]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=None if mb is None else mb * MB)
                for pid, mb in self.gpus[h]["processes"]]  # fmt: skip

    def nvmlDeviceGetGraphicsRunningProcesses(self, h: int) -> list[Any]:
        return []

    def nvmlSystemGetProcessName(self, pid: int) -> bytes:
        if pid not in self.names:
            raise NVMLError(NOT_SUPPORTED)
        return self.names[pid].encode()
