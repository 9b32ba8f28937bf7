"""Job kinds and the functions that run them (imported only when a job of that kind runs)."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from engine.jobctx import JobContext

HANDLERS: dict[str, str] = {
    "dataset-import": "engine.datasets.importer:run_import_job",
    "selftest": "engine.selftest:run_selftest",
    "train": "engine.train.trainer:run_train_job",
    "merge": "engine.merge.adapter:run_merge_job",
    "merge-models": "engine.merge.models:run_merge_models_job",
    "convert": "engine.gguf.job:run_convert_job",
    "quantize": "engine.gguf.job:run_quantize_job",
    "eval": "engine.evaluate.job:run_eval_job",
    "push": "engine.push:run_push_job",
    "model-add": "engine.models.job:run_model_add_job",
    "compress": "engine.compress.job:run_compress_job",
}


def handler_for(kind: str) -> Callable[[JobContext], None]:
    """The function that runs jobs of `kind`."""
    try:
        target = HANDLERS[kind]
    except KeyError:
        raise ValueError(f"unknown job kind {kind!r}") from None
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)
