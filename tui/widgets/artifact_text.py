"""How an artifact reads in a table or a header: its fidelity badge and its path relative to the home."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text

BADGE = {"pass": ("✓ pass", "green"), "warn": ("! warn", "yellow"), "fail": ("✗ fail", "red")}


def home_relative(path: str, home: Path) -> str:
    """A path inside the tunedeck home relative to it (`jobs/7/output/m.gguf`), else with the user's home as ~."""
    p = Path(path)
    for base, prefix in ((home, ""), (Path.home(), "~/")):
        try:
            return prefix + str(p.relative_to(base))
        except ValueError:
            continue
    return path


def badge(meta: dict[str, Any]) -> Text:
    """The fidelity badge of an artifact's metadata ("" when it has none)."""
    status = (meta.get("fidelity") or {}).get("status")
    if status not in BADGE:
        return Text("")
    label, style = BADGE[status]
    return Text(label, style=f"bold {style}")
