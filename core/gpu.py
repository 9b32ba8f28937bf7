"""What the GPU panel and `tunedeck gpu` read: tunedeck's running jobs by their engine's pid, beside a GPU
sample (NVML, through the engine's sampler)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from store.db import Store

if TYPE_CHECKING:
    from engine.gpu.types import OwnJob, Snapshot


def own_jobs(store: Store | None) -> dict[int, OwnJob]:
    """Running tunedeck jobs by their engine's pid ({} without a store)."""
    from engine.gpu.types import OwnJob
    from store.gpu import running_job_pids

    if store is None:
        return {}
    with store.raw() as conn:
        return {pid: OwnJob(*job) for pid, job in running_job_pids(conn).items()}


def gpu_sampler() -> Any:
    """A live NVML sampler (engine.gpu.nvml.Sampler; it answers "not available" without a driver). The caller
    samples with `sample_gpus` and closes it."""
    from engine.gpu.nvml import Sampler

    return Sampler()


def sample_gpus(store: Store | None, sampler: Any) -> Snapshot:
    """A GPU sample from `sampler` (an engine.gpu.nvml.Sampler) with tunedeck's own jobs marked."""
    return sampler.sample(own_jobs(store))
