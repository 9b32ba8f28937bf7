"""Near duplicates: LSH banding over the MinHash signatures, tuned to the lowest similarity still checked (misses
weigh more than false candidates), and candidate pairs kept only when their Jaccard similarity reaches the
threshold: the exact similarity of the shingle sets when the texts are at hand (candidates estimated within
:data:`VERIFY_MARGIN` of the threshold are checked), else the MinHash estimate.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from engine.datasets.dedup.exact import exact_key
from engine.datasets.dedup.minhash import (
    _EMPTY,
    _MASK32,
    _MAX64,
    _SH,
    _U64,
    _byte_chunks,
    _fmix,
    _runs,
    minhash_signatures,
    shingle_sets,
)

BIG_BUCKET = 48  # LSH buckets larger than this are linked leader+neighbour instead of all pairs


def lsh_params(threshold: float, num_perm: int, fp_weight: float = 0.05) -> tuple[int, int]:
    """(bands, rows) minimizing the weighted false-positive and false-negative areas around ``threshold``.

    Candidates are verified afterwards, so a false positive costs only a comparison: misses weigh 19x more.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError("threshold must be in (0, 1]")
    best: tuple[float, int, int] | None = None
    lo = np.linspace(0.0, threshold, 101)
    hi = np.linspace(threshold, 1.0, 101)
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = np.trapezoid(1.0 - (1.0 - lo**r) ** b, lo)
            fn = np.trapezoid((1.0 - hi**r) ** b, hi)
            err = float(fp_weight * fp + (1.0 - fp_weight) * fn)
            if best is None or err < best[0] - 1e-12:
                best = (err, b, r)
    assert best is not None
    return best[1], best[2]


def _band_keys(sig: np.ndarray, bands: int, rows: int) -> Iterator[np.ndarray]:
    for b in range(bands):
        h = np.full(len(sig), _U64(((b + 1) * int(_SH[2])) & _MAX64), dtype=np.uint64)
        for c in range(b * rows, (b + 1) * rows):
            h = _fmix(h ^ (sig[:, c].astype(np.uint64) + _U64((c * int(_SH[0])) & _MAX64)))
        yield h


def _bucket_pairs(keys: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Candidate pairs (as i<<32|j, i<j) among rows sharing a band key."""
    idx = np.flatnonzero(valid)
    order = idx[np.argsort(keys[idx], kind="stable")]
    sk = keys[order]
    if len(sk) < 2:
        return np.zeros(0, dtype=np.uint64)
    new = np.ones(len(sk), dtype=bool)
    np.not_equal(sk[1:], sk[:-1], out=new[1:])
    gstart = np.flatnonzero(new)
    gsize = np.diff(np.append(gstart, len(sk)))
    out: list[np.ndarray] = []
    small = (gsize >= 2) & (gsize <= BIG_BUCKET)
    if small.any():
        # every member against every later member of its bucket
        st, sz = gstart[small], gsize[small]
        member = np.repeat(st, sz) + _runs(sz)  # positions in `order`
        later = np.repeat(st + sz, sz) - member - 1  # partners after each member
        left = np.repeat(member, later)
        right = left + 1 + _runs(later)
        a, b = order[left], order[right]
        out.append((np.minimum(a, b).astype(np.uint64) << _U64(32)) | np.maximum(a, b).astype(np.uint64))
    for s, z in zip(gstart[gsize > BIG_BUCKET].tolist(), gsize[gsize > BIG_BUCKET].tolist(), strict=True):
        members = np.sort(order[s : s + z])
        a = np.concatenate([np.full(z - 1, members[0]), members[1:-1]])
        b = np.concatenate([members[1:], members[2:]])
        out.append((a.astype(np.uint64) << _U64(32)) | b.astype(np.uint64))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint64)


VERIFY_MARGIN = 0.1  # candidates estimated this far below the threshold still get an exact check


def _candidates(sig: np.ndarray, threshold: float) -> np.ndarray:
    """Candidate pairs (as i<<32|j, i<j, unique) among signature rows."""
    valid = ~(sig == _EMPTY).all(axis=1)
    bands, rows = lsh_params(threshold, sig.shape[1])
    cands = [_bucket_pairs(keys, valid) for keys in _band_keys(sig, bands, rows)]
    return np.unique(np.concatenate(cands)) if cands else np.zeros(0, dtype=np.uint64)


def _estimated(sig: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, estimated Jaccard) for candidate pairs."""
    a = (cand >> _U64(32)).astype(np.int64)
    b = (cand & _MASK32).astype(np.int64)
    sim = np.empty(len(cand))
    for s in range(0, len(cand), 100_000):
        sim[s : s + 100_000] = (sig[a[s : s + 100_000]] == sig[b[s : s + 100_000]]).mean(axis=1)
    return a, b, sim


def _exact_jaccard(a: np.ndarray, b: np.ndarray, text_of: Callable[[int], str]) -> np.ndarray:
    """Exact Jaccard similarity of the shingle sets of pairs (a[k], b[k])."""
    out = np.empty(len(a))
    for s in range(0, len(a), 20_000):
        ca, cb = a[s : s + 20_000], b[s : s + 20_000]
        docs = np.unique(np.concatenate([ca, cb]))
        sets = dict(zip(docs.tolist(), shingle_sets([text_of(int(g)) for g in docs]), strict=True))
        for k, (x, y) in enumerate(zip(ca.tolist(), cb.tolist(), strict=True)):
            sx, sy = sets[x], sets[y]
            inter = np.intersect1d(sx, sy, assume_unique=True).size
            union = len(sx) + len(sy) - inter
            out[s + k] = inter / union if union else 1.0
    return out


def _similar_pairs(
    sig: np.ndarray, threshold: float, text_of: Callable[[int], str] | None = None
) -> list[tuple[int, int, float]]:
    """Pairs (i, j, similarity) among signature rows with i < j, sorted: estimated Jaccard >= threshold,
    or, given ``text_of(row)``, exact Jaccard >= threshold for pairs estimated within the margin."""
    if len(sig) < 2:
        return []
    margin = VERIFY_MARGIN if text_of is not None else 0.0
    floor = max(threshold - margin, 0.05)
    a, b, sim = _estimated(sig, _candidates(sig, floor))  # banding tuned to the floor: few misses above it
    floor -= 1e-9
    keep = sim >= floor
    a, b, sim = a[keep], b[keep], sim[keep]
    if text_of is not None and len(a):
        sim = _exact_jaccard(a, b, text_of)
        keep = sim >= threshold - 1e-9
        a, b, sim = a[keep], b[keep], sim[keep]
    return list(zip(a.tolist(), b.tolist(), np.round(sim, 3).tolist(), strict=True))


class NearDuplicateIndex:
    """Incremental near-duplicate finder: ``add`` texts chunk by chunk (memory stays at the signatures),
    then ``pairs``. Texts added with ``skip=True`` (e.g. exact duplicates) keep their index but are ignored."""

    def __init__(self, num_perm: int = 64) -> None:
        self.num_perm = num_perm
        self._sigs: list[np.ndarray] = []
        self._ids: list[np.ndarray] = []
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def add(self, texts: Sequence[str], skip: Sequence[bool] | None = None) -> None:
        """Append texts; their indices continue from the texts added before."""
        keep = np.arange(len(texts)) if skip is None else np.flatnonzero(~np.asarray(skip, dtype=bool))
        if len(keep):
            chosen = texts if len(keep) == len(texts) else [texts[i] for i in keep.tolist()]
            for s in _byte_chunks(chosen):
                self._sigs.append(minhash_signatures(chosen[s], self.num_perm))
            self._ids.append(keep + self._n)
        self._n += len(texts)

    def pairs(
        self, threshold: float = 0.85, text_of: Callable[[int], str] | None = None
    ) -> list[tuple[int, int, float]]:
        """Pairs (i, j, similarity >= threshold) with i < j, sorted by (i, j).

        With ``text_of(index)`` (the text added at that index) candidates are verified by their exact
        Jaccard similarity, which is also what is returned; without it, by the MinHash estimate.
        """
        if not self._sigs:
            return []
        sig = np.concatenate(self._sigs)
        ids = np.concatenate(self._ids)
        of_row = None if text_of is None else (lambda row: text_of(int(ids[row])))
        return [(int(ids[a]), int(ids[b]), s) for a, b, s in _similar_pairs(sig, threshold, of_row)]


def near_duplicate_pairs(
    texts: Sequence[str], threshold: float = 0.85, num_perm: int = 64, verify: bool = True
) -> list[tuple[int, int, float]]:
    """Near-duplicate pairs (i, j, Jaccard similarity >= threshold) of word 3-gram shingle sets, i < j, sorted.

    MinHash + LSH find the candidates; with ``verify`` (default) their exact Jaccard similarity decides
    and is returned, otherwise the MinHash estimate. Exact duplicates are excluded: only the first text
    of each exact group takes part.
    """
    seen: set[bytes] = set()
    skip = []
    for t in texts:
        k = exact_key(t)
        skip.append(k in seen)
        seen.add(k)
    index = NearDuplicateIndex(num_perm)
    index.add(texts, skip)
    return index.pairs(threshold, texts.__getitem__ if verify else None)
