"""Job kinds and the functions that run them (imported only when a job of that kind runs)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from engine.jobctx import JobContext

HANDLERS: dict[str, str] = {
    "dataset-import": "engine.datasets.importer:run_import_job",
    "selftest": "engine.selftest:run_selftest",
    "train": "engine.train.trainer:run_train_job",
}


def handler_for(kind: str) -> Callable[[JobContext], None]:
    """The function that runs jobs of `kind`."""
    try:
        target = HANDLERS[kind]
    except KeyError:
        raise ValueError(f"unknown job kind {kind!r}") from None
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)
