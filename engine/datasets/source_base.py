"""What every dataset reader shares: the error for an unreadable source, the record stream's item types, and
opening a (possibly gzipped) file."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from engine.datasets.types import Location, RecordError
from store.errors import TunedeckError

__all__ = ["Record", "SourceError", "SourceFields", "first_line", "gzipped", "kind", "open_source", "utf8_problem"]


class SourceError(TunedeckError):
    """A source cannot be read at all (missing, unknown type, unreadable, empty); names the source."""


@dataclass(frozen=True)
class SourceFields:
    """Top-level keys of a JSON file that hold no records (beside the list that does): reported, not imported."""

    fields: tuple[str, ...]


Record = tuple[Location, dict[str, Any] | RecordError | SourceFields]


def kind(value: Any) -> str:
    """A value's type in words, for "expected X, got Y" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__

def gzipped(path: Path) -> bool:
    """Whether the file is gzip-compressed (by its name)."""
    return path.suffix.lower() == ".gz"

def open_source(path: Path) -> BinaryIO:
    """The file opened for binary reading, through gzip when it is compressed; SourceError if unreadable."""
    try:
        return gzip.open(path, "rb") if gzipped(path) else open(path, "rb")  # type: ignore[return-value]
    except OSError as e:
        raise SourceError(f"{path}: cannot read: {e.strerror or e}") from None

def utf8_problem(raw: bytes, e: UnicodeDecodeError) -> str:
    """Where a line's invalid UTF-8 is, in words (its byte and column)."""
    return f"byte 0x{raw[e.start]:02x} at column {e.start + 1}"

def first_line(e: BaseException) -> str:
    """An exception's first line, at most 300 characters, for one-line error messages."""
    text = str(e).strip().split("\n")[0] or type(e).__name__
    return text[:300]
