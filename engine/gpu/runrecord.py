"""What a training run on a GPU records for calibration: its estimate at start, its measured peak at the end."""

from __future__ import annotations

from typing import Any

from store.db import Store
from store.errors import TunedeckError


def record_run_estimate(store: Store, job_id: int, run: dict[str, Any], model_path: str) -> dict[str, Any] | None:
    """Estimate the run's GPU memory from its config (no weights loaded) and keep it in the job's result.

    Returns the estimate, or None when the model's config cannot be read by the estimator.
    """
    from engine.gpu.calibrate import record_estimate
    from engine.gpu.estimate import estimate
    from engine.gpu.layout import model_layout, read_config
    from engine.gpu.summary import form_settings

    settings = form_settings(run)
    if settings is None:
        return None
    try:
        config, _ = read_config(model_path, download=False)
        result = estimate(model_layout(config, meta=False), settings, suggest=False).to_dict()
    except TunedeckError:
        return None
    record_estimate(store, job_id, result)
    return result
