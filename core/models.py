"""Base models as both faces add and describe them: `tunedeck model add/modules` and the Models tab."""

from __future__ import annotations

from typing import Any

from store.db import Store


def queue_model_add(store: Store, project: str, source: str, *, name: str | None = None,
                    dtype: str = "auto") -> int:
    """Check SOURCE (a model folder, a .gguf file or a hub id) and queue a `model-add` job; returns the job id."""
    from engine.models.queue import queue_model_add as queue

    return queue(store, project, source, name=name, dtype=dtype)


def model_modules(store: Store, model: str) -> dict[str, int]:
    """{linear layer name: how many layers have it} of `model` (a path, hub id or model name; for
    lora.target_modules). Reads the model's config only, not its weights."""
    from engine.train.modules import linear_module_names
    from engine.train.queue import resolve_model

    path, _ = resolve_model(store, model, need_weights=False)
    return linear_module_names(path)


def source_text(meta: dict[str, Any]) -> str:
    """Where a model came from, in a few words (a model artifact's meta)."""
    kind = meta.get("source_type")
    if kind == "hub":
        return f"hub {meta.get('source')}@{str(meta.get('source_sha'))[:10]}"
    if kind == "gguf":
        return f"GGUF {meta.get('dequantized_from')} (dequantized)"
    if kind == "folder":
        return "folder"
    if meta.get("base_model"):
        return "trained"
    return "-"
