"""Calibrating the memory estimator on what past runs really used.

A GPU run records its estimate when it starts (`record_estimate`) and its measured peak when it ends
(`record_measured`), both in the job's `result` JSON. From the jobs that have both, `correction_factors`
learns, per model family (config.json's model_type), the median of measured / estimated (the estimate
before any calibration, so factors never compound), clamped to CLAMP and only from MIN_SAMPLES runs up.
A family's runs of one method get their own factor once there are enough of them.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from engine.gpu.estimate import MIB, Factor

if TYPE_CHECKING:
    from store.db import Store

MIN_SAMPLES = 3
CLAMP = (0.5, 2.0)
ESTIMATE_KEY = "gpu_estimate"
MEASURED_KEY = "gpu_peak_mb"


def _mb(data: dict[str, Any], mb_key: str, bytes_key: str) -> float | None:
    value = data.get(mb_key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    value = data.get(bytes_key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value) / MIB
    return None


def compact_estimate(estimate: dict[str, Any]) -> dict[str, Any]:
    """What a job keeps of an estimate (`Estimate.to_dict()`): totals in MiB, family, method and settings."""
    settings = estimate.get("settings") or {}
    total = _mb(estimate, "total_mb", "total_bytes")
    raw = _mb(estimate, "raw_total_mb", "raw_total_bytes")
    if total is None:
        raise ValueError("the estimate has no total (total_mb or total_bytes)")
    factor = estimate.get("factor")
    return {
        "total_mb": round(total, 1),
        "raw_total_mb": round(raw if raw is not None else total, 1),
        "model_type": str(estimate.get("model_type") or "unknown"),
        "method": str(estimate.get("method") or settings.get("method") or ""),
        "factor": factor.get("factor") if isinstance(factor, dict) else None,
        "settings": {k: settings[k] for k in ("batch", "max_length", "rank", "gradient_checkpointing", "optimizer")
                     if k in settings},
    }  # fmt: skip


def record_estimate(store: Store, job_id: int, estimate_dict: dict[str, Any]) -> None:
    """Keep a run's estimate (an `Estimate.to_dict()`) in its job's result."""
    from store.jobs import set_result

    with store.write() as session:
        set_result(session, job_id, {ESTIMATE_KEY: compact_estimate(estimate_dict)})


def record_measured(store: Store, job_id: int, peak_mb: float) -> None:
    """Keep a run's measured peak GPU memory (MiB) in its job's result."""
    from store.jobs import set_result

    if not peak_mb or peak_mb <= 0:
        return
    with store.write() as session:
        set_result(session, job_id, {MEASURED_KEY: round(float(peak_mb), 1)})


@dataclass(frozen=True)
class HistoryRow:
    """A past run's estimate next to what it used."""

    job_id: int
    name: str
    status: str
    model_type: str
    method: str
    estimate_mb: float
    raw_estimate_mb: float
    measured_mb: float | None

    @property
    def error_pct(self) -> float | None:
        """How far off the estimate was: (measured - estimate) / estimate, in percent."""
        if self.measured_mb is None or self.estimate_mb <= 0:
            return None
        return (self.measured_mb - self.estimate_mb) / self.estimate_mb * 100

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "error_pct": None if self.error_pct is None else round(self.error_pct, 1)}


def history(store: Store) -> list[HistoryRow]:
    """Every job with a recorded estimate, newest first, with its measured peak when it has one."""
    from store.gpu import calibration_rows

    with store.raw() as conn:
        rows = calibration_rows(conn)
    out = []
    for job_id, name, status, result in rows:
        est = result.get(ESTIMATE_KEY)
        if not isinstance(est, dict):
            continue
        total = _mb(est, "total_mb", "total_bytes")
        if total is None:
            continue
        raw = _mb(est, "raw_total_mb", "raw_total_bytes") or total
        measured = result.get(MEASURED_KEY)
        measured = float(measured) if isinstance(measured, int | float) and measured > 0 else None
        out.append(HistoryRow(job_id, name, status, str(est.get("model_type") or "unknown"),
                              str(est.get("method") or ""), total, raw, measured))  # fmt: skip
    return out


def factors_from(rows: list[HistoryRow], min_samples: int = MIN_SAMPLES) -> dict[tuple[str, str | None], Factor]:
    """Correction factors keyed by (model_type, method) and (model_type, None) for every method together."""
    groups: dict[tuple[str, str | None], list[float]] = {}
    for row in rows:
        if row.measured_mb is None or row.raw_estimate_mb <= 0:
            continue
        ratio = row.measured_mb / row.raw_estimate_mb
        groups.setdefault((row.model_type, row.method or None), []).append(ratio)
        groups.setdefault((row.model_type, None), []).append(ratio)
    out = {}
    for (model_type, method), ratios in groups.items():
        if len(ratios) >= min_samples:
            factor = min(max(statistics.median(ratios), CLAMP[0]), CLAMP[1])
            out[(model_type, method)] = Factor(model_type, method, round(factor, 4), len(ratios))
    return out


def correction_factors(store: Store) -> dict[tuple[str, str | None], Factor]:
    """The correction factors learned from this store's past runs."""
    return factors_from(history(store))


def factor_for(factors: dict[tuple[str, str | None], Factor], model_type: str, method: str) -> Factor | None:
    """The factor for a family's runs of one method, else for the family as a whole, else None."""
    return factors.get((model_type, method)) or factors.get((model_type, None))
