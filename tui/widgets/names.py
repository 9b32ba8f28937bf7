"""Names cut to fit a column without losing their distinctive end: `smollm2-135m-inst…-q4_k_m.gguf`."""

from __future__ import annotations


def middle_clip(text: str, width: int) -> str:
    """`text` in at most `width` characters: when longer, its start and its end with an ellipsis between (the end
    gets the larger half: a file's quant suffix or a run's number is what tells names apart)."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    tail = width // 2
    head = width - 1 - tail
    return text[:head] + "…" + text[len(text) - tail:]
