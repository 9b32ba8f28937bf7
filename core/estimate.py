"""The GPU memory estimate both faces show: `tunedeck estimate` and the New Run form's line call the engine's one
wiring of the estimator (engine.gpu.summary.model_estimate); the past estimates beside measured peaks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from store.db import Store

if TYPE_CHECKING:
    from engine.gpu.estimate import Estimate, Settings


def estimate_settings(**values: Any) -> Settings:
    """The run settings an estimate is for (method, max_length, batch, grad_accum, rank, precision, gpus...)."""
    from engine.gpu.estimate import Settings

    return Settings(**values)


def estimate_model(store: Store | None, model: str, settings: Settings, *, free_bytes: int | None = None,
                   free_source: str = "", calibrate: bool = True) -> tuple[Estimate, str]:
    """The estimate for training `model` (a folder, config.json, hub id or `model add` name) with `settings`,
    checked as the loader checks it and corrected by the store's calibration; and where its config was read."""
    from engine.gpu.summary import model_estimate

    return model_estimate(store, model, settings, free_bytes=free_bytes, free_source=free_source,
                          calibrate=calibrate, check=True)


def form_estimate(store: Store | None, data: dict[str, Any]) -> str:
    """The New Run form's one line for a run config dict as the form holds it: "GPU memory ≈ 9.6 GiB · fits GPU 0
    (…)", or why there is no estimate; "" without a model. Reads only local files."""
    from engine.gpu.summary import form_estimate as line

    return line(store, data)


def estimate_history(store: Store | None) -> tuple[list[Any], list[Any]]:
    """Past runs' estimates beside their measured peaks, and the correction factors learned from them."""
    from engine.gpu.calibrate import factors_from, history

    rows = history(store) if store is not None else []
    return rows, list(factors_from(rows).values())
