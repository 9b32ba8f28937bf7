"""Shared types of the dataset pipeline: where a record came from, what is wrong with it, and
what a normalized example looks like.

Normalized examples (one JSON object per line in a snapshot):
- SFT formats (alpaca, chat, sharegpt): ``{"id": int, "messages": [{"role", "content"}, ...]}``, with
  ``"tools": [schema, ...]`` when the record gives tools (assistant messages may then carry ``tool_calls``
  and ``tool`` messages ``tool_call_id``/``name``; see ``messages``)
- input_output (axolotl's template-free SFT): ``{"id": int, "segments": [{"text": str, "label": bool}, ...]}``
- preference: ``{"id": int, "prompt": [msgs], "chosen": [msgs], "rejected": [msgs]}``
- kto (unpaired preference): ``{"id": int, "prompt": [msgs], "completion": [msgs], "label": bool}``
- text: ``{"id": int, "text": str}``
``id`` is the 0-based position of the example among the valid examples of the import,
before the train/val split; reports refer to examples by it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

FORMATS = ("alpaca", "chat", "sharegpt", "input_output", "preference", "kto", "text")
Format = Literal["alpaca", "chat", "sharegpt", "input_output", "preference", "kto", "text"]
Kind = Literal["sft", "preference", "kto", "text"]
ROLES = ("system", "user", "assistant", "tool")


def kind_of(fmt: str) -> Kind:
    """What a format normalizes to."""
    if fmt in ("preference", "kto", "text"):
        return fmt  # type: ignore[return-value]
    return "sft"


@dataclass(frozen=True)
class Location:
    """A record's place in its source: file path and 1-based line (JSONL) or row (CSV, Parquet, JSON array)."""

    file: str
    line: int
    unit: Literal["line", "row"] = "line"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" if self.unit == "line" else f"{self.file}: row {self.line}"


@dataclass(frozen=True)
class RecordError:
    """One problem with one record, fit to show a user: ``file:line: field: message``."""

    location: Location
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.location}: {self.field}" if self.field else str(self.location)
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.location.file, "line": self.location.line, "unit": self.location.unit,
                "field": self.field, "message": self.message}


@dataclass
class Example:
    """A normalized example and where it came from."""

    data: dict[str, Any]  # the normalized object without "id" (see module docstring)
    location: Location
    format: str
    extra: dict[str, Any] = field(default_factory=dict)
