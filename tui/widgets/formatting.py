"""Formatting helpers shared by the screens: how long ago, human sizes, clipped text."""

from __future__ import annotations

import time


def ago(stamp: float | None, now: float | None = None) -> str:
    """A short, coarse "how long ago" (coarse so that a refresh rarely changes it)."""
    if not stamp:
        return "-"
    seconds = max(0.0, (time.time() if now is None else now) - stamp)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)}m ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h ago"
    if seconds < 86400 * 30:
        return f"{int(seconds // 86400)}d ago"
    return time.strftime("%Y-%m-%d", time.localtime(stamp))


def size_text(size: int) -> str:
    """Bytes as a short human size."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def clip(text: str, width: int) -> str:
    """`text` cut to `width` cells with an ellipsis when it is longer."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"
