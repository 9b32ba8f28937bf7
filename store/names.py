"""Validation of user-supplied names (projects, datasets, runs): they end up in paths and tables."""

from __future__ import annotations

import unicodedata

from store.errors import InvalidName

MAX_NAME = 64


def check_name(name: str, what: str = "name") -> str:
    """Return `name` stripped if it is usable, else raise InvalidName saying why."""
    cleaned = name.strip()
    if not cleaned:
        raise InvalidName(f"{what} must not be empty")
    if len(cleaned) > MAX_NAME:
        raise InvalidName(f"{what} is {len(cleaned)} characters long; the limit is {MAX_NAME}")
    if "/" in cleaned or "\\" in cleaned:
        raise InvalidName(f"{what} {cleaned!r} must not contain a path separator")
    if cleaned in {".", ".."}:
        raise InvalidName(f"{what} {cleaned!r} is not allowed")
    for ch in cleaned:
        if unicodedata.category(ch).startswith("C"):
            raise InvalidName(f"{what} {cleaned!r} contains a control character (U+{ord(ch):04X})")
    return cleaned
