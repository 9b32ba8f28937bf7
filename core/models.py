"""Base models as both faces describe them."""

from __future__ import annotations

from typing import Any


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
