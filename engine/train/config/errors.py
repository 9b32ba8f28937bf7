"""The run configuration's error type and how its messages show a user's values."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from store.errors import TunedeckError

__all__ = ["ConfigError", "show_number", "show_value"]


class ConfigError(TunedeckError):
    """A run configuration cannot be used; ``problems`` holds one ready-to-print line per problem."""

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


def show_value(value: Any) -> str:
    """A user's value as error messages quote it (short; 2e-4 as written)."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value.strip()):
            return value.strip()  # YAML 1.1 reads 2e-4 as a string; show it as the user wrote it
        text = repr(value)
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, dict):
        text = "a mapping"
    elif isinstance(value, list):
        text = "[" + ", ".join(show_value(v) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def show_number(value: Any) -> str:
    """A number as messages show it (floats in their shortest form)."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
