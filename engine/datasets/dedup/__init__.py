"""Exact and near-duplicate detection for normalized examples, one module per job:

- ``text``: the canonical text of an example (what is compared);
- ``exact``: exact duplicates, a 128-bit BLAKE2b digest of the whitespace-normalized, casefolded text;
- ``minhash``: one-permutation MinHash signatures over word 3-gram (or byte 5-gram) shingles, hashed with numpy;
- ``near``: LSH banding over the signatures and the Jaccard check of the candidates (``NearDuplicateIndex``);
- here: which examples ``--dedup`` drops.

The names below are re-exported so that ``from engine.datasets.dedup import ...`` keeps working.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from engine.datasets.dedup.exact import exact_duplicate_groups, exact_key
from engine.datasets.dedup.minhash import CHAR_GRAM, SHORT_WORDS, WORD_GRAM, minhash_signatures, shingle_sets
from engine.datasets.dedup.near import (
    BIG_BUCKET,
    VERIFY_MARGIN,
    NearDuplicateIndex,
    lsh_params,
    near_duplicate_pairs,
)
from engine.datasets.dedup.text import content_text, example_text

DedupMode = Literal["none", "exact", "near"]

__all__ = [
    "BIG_BUCKET",
    "CHAR_GRAM",
    "SHORT_WORDS",
    "VERIFY_MARGIN",
    "WORD_GRAM",
    "DedupMode",
    "NearDuplicateIndex",
    "content_text",
    "drop_set",
    "duplicates_to_drop",
    "exact_duplicate_groups",
    "exact_key",
    "example_text",
    "lsh_params",
    "minhash_signatures",
    "near_duplicate_pairs",
    "shingle_sets",
]


def drop_set(exact_groups: Iterable[Sequence[int]], near_pairs: Iterable[tuple[int, int, float]] = ()) -> set[int]:
    """Indices to drop so one example of each exact group survives and no kept example has a kept
    near-duplicate before it (greedy in index order: every dropped example has a kept near twin)."""
    drop: set[int] = set()
    for g in exact_groups:
        drop.update(sorted(g)[1:])
    earlier: dict[int, list[int]] = {}
    for i, j, _ in near_pairs:
        a, b = (i, j) if i < j else (j, i)
        earlier.setdefault(b, []).append(a)
    for j in sorted(earlier):
        if j not in drop and any(i not in drop for i in earlier[j]):
            drop.add(j)
    return drop


def duplicates_to_drop(texts: Sequence[str], mode: DedupMode = "exact", threshold: float = 0.85) -> set[int]:
    """Indices ``--dedup MODE`` removes: none, exact duplicates, or exact plus near duplicates (first one kept)."""
    if mode == "none":
        return set()
    if mode not in ("exact", "near"):
        raise ValueError(f"unknown dedup mode {mode!r}: use none, exact or near")
    groups = exact_duplicate_groups(texts)
    pairs = near_duplicate_pairs(texts, threshold) if mode == "near" else []
    return drop_set(groups, pairs)
