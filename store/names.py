"""Validation of user-supplied names (projects, datasets, runs): they end up in paths and tables."""

from __future__ import annotations

import unicodedata

from store.errors import InvalidName

MAX_NAME = 64


def name_problem(name: str) -> str | None:
    """What makes `name` unusable in a path or a terminal (a path separator, "." or "..", a control
    character), or None. Length and emptiness are the caller's rules."""
    if "/" in name or "\\" in name:
        return "must not contain a path separator"
    if name in {".", ".."}:
        return "is not allowed"
    for ch in name:
        if unicodedata.category(ch).startswith("C"):
            return f"contains a control character (U+{ord(ch):04X})"
    return None


def check_name(name: str, what: str = "name") -> str:
    """Return `name` stripped if it is usable, else raise InvalidName saying why."""
    cleaned = name.strip()
    if not cleaned:
        raise InvalidName(f"{what} must not be empty")
    if len(cleaned) > MAX_NAME:
        raise InvalidName(f"{what} is {len(cleaned)} characters long; the limit is {MAX_NAME}")
    problem = name_problem(cleaned)
    if problem:
        raise InvalidName(f"{what} {cleaned!r} {problem}")
    return cleaned
