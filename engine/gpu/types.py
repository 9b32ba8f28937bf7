"""The shapes the GPU sampler returns: plain dataclasses, JSON-ready through `to_dict`.

A field a driver does not report, or whose NVML call failed, is None (shown as "n/a").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

NA = "n/a"


@dataclass(frozen=True)
class OwnJob:
    """A running tunedeck job whose engine process may hold a GPU."""

    job_id: int
    kind: str
    name: str = ""


@dataclass
class GpuProcess:
    """A process using a GPU, with tunedeck's job when it is one of ours."""

    pid: int
    name: str | None = None
    memory_mb: float | None = None
    job: OwnJob | None = None


@dataclass
class GpuSample:
    """One GPU at one moment, with a short history of utilization and memory (oldest first)."""

    index: int
    name: str | None = None
    uuid: str | None = None
    util_pct: float | None = None
    memory_used_mb: float | None = None
    memory_total_mb: float | None = None
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    processes: list[GpuProcess] = field(default_factory=list)
    util_history: list[float | None] = field(default_factory=list)
    mem_history: list[float | None] = field(default_factory=list)

    @property
    def memory_free_mb(self) -> float | None:
        """Total less used, when both are known."""
        if self.memory_total_mb is None or self.memory_used_mb is None:
            return None
        return max(0.0, self.memory_total_mb - self.memory_used_mb)


@dataclass
class Snapshot:
    """Every GPU at one moment, or why there are none (`available` False and `message`)."""

    available: bool
    message: str = ""
    driver_version: str | None = None
    gpus: list[GpuSample] = field(default_factory=list)
    taken_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (free memory included per GPU)."""
        data = asdict(self)
        for gpu, out in zip(self.gpus, data["gpus"], strict=True):
            out["memory_free_mb"] = gpu.memory_free_mb
        return data


def fmt(value: float | str | None, unit: str = "", digits: int = 0) -> str:
    """A value with its unit, or "n/a" when unknown."""
    if value is None:
        return NA
    if isinstance(value, str):
        return value
    return f"{value:.{digits}f}{unit}"


def gib(mb: float | None, digits: int = 1) -> str:
    """MiB as GiB text, or "n/a"."""
    return NA if mb is None else f"{mb / 1024:.{digits}f} GiB"
