"""Exact duplicates: a 128-bit BLAKE2b digest of the whitespace-normalized, casefolded text."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

_ASCII_NORM = bytes.maketrans(b"\t\n\x0b\x0c\r\x1c\x1d\x1e\x1fABCDEFGHIJKLMNOPQRSTUVWXYZ",
                              b"         abcdefghijklmnopqrstuvwxyz")  # fmt: skip


def exact_key(text: str) -> bytes:
    """128-bit BLAKE2b digest of ``" ".join(text.split()).casefold()`` (a byte-level fast path for ASCII)."""
    if text.isascii():
        b = text.encode("ascii").translate(_ASCII_NORM)
        while b"  " in b:
            b = b.replace(b"  ", b" ")
        b = b.strip(b" ")
    else:
        b = " ".join(text.split()).casefold().encode("utf-8", "surrogatepass")
    return hashlib.blake2b(b, digest_size=16).digest()


def exact_duplicate_groups(texts: Iterable[str]) -> list[list[int]]:
    """Groups (2+ indices, ascending; groups ordered by first index) of texts equal up to whitespace and case."""
    seen: dict[bytes, list[int]] = {}
    for i, t in enumerate(texts):
        seen.setdefault(exact_key(t), []).append(i)
    return [g for g in seen.values() if len(g) > 1]  # dicts keep insertion order: sorted by first index
