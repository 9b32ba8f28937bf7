"""GPU samples as run metrics: `record_sample` writes `gpu_util` (%) and `gpu_mem_used_mb` at a step,
so a finished run shows its GPU utilization and memory over time."""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from engine.gpu.nvml import Sampler
from engine.gpu.types import GpuSample

if TYPE_CHECKING:
    from store.db import Store

_default: Sampler | None = None
_default_lock = threading.Lock()


def default_sampler() -> Sampler:
    """One sampler per process (NVML started once, fields cached, at most one read a second)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Sampler()
        return _default


def _visible_index() -> int | None:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return int(visible) if visible.isdigit() else None


def job_gpus(gpus: list[GpuSample], pid: int, device: int | None = None) -> list[GpuSample]:
    """The GPUs a process uses: those listing `pid` among their processes; else GPU `device`; else the one
    CUDA_VISIBLE_DEVICES names, or the only GPU there is."""
    mine = [g for g in gpus if any(p.pid == pid for p in g.processes)]
    if mine:
        return mine
    index = device if device is not None else _visible_index()
    if index is None and len(gpus) == 1:
        index = gpus[0].index
    return [g for g in gpus if g.index == index]


def gpu_metrics(gpus: list[GpuSample], pid: int) -> dict[str, float]:
    """Mean utilization of the GPUs and the memory the process holds on them (the cards' used memory when
    the driver does not report per-process memory)."""
    utils = [g.util_pct for g in gpus if g.util_pct is not None]
    own = [p.memory_mb for g in gpus for p in g.processes if p.pid == pid and p.memory_mb is not None]
    used = [g.memory_used_mb for g in gpus if g.memory_used_mb is not None]
    out: dict[str, float] = {}
    if utils:
        out["gpu_util"] = sum(utils) / len(utils)
    if own:
        out["gpu_mem_used_mb"] = sum(own)
    elif used:
        out["gpu_mem_used_mb"] = sum(used)
    return out


def record_sample(store: Store, job_id: int, step: int, sampler: Sampler | None = None,
                  device: int | None = None, pid: int | None = None) -> dict[str, float]:  # fmt: skip
    """Write this process's GPU utilization and memory as metrics of `job_id` at `step`; returns what was
    written ({} without a GPU). Never raises for NVML trouble."""
    from store.metrics import upsert_metrics

    snapshot = (sampler or default_sampler()).sample()
    if not snapshot.available:
        return {}
    pid = os.getpid() if pid is None else pid
    values = gpu_metrics(job_gpus(snapshot.gpus, pid, device), pid)
    if values:
        with store.write() as session:
            upsert_metrics(session, job_id, step, values)
    return values
