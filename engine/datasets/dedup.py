"""Exact and near-duplicate detection for normalized examples.

Exact duplicates: a 128-bit BLAKE2b digest of the whitespace-normalized, casefolded text.

Near duplicates: MinHash signatures over word 3-gram shingles (byte 5-grams for texts of fewer
than :data:`SHORT_WORDS` words), LSH banding tuned to the lowest similarity still checked (misses
weigh more than false candidates), and candidate pairs kept only when their Jaccard similarity
reaches the threshold: the exact similarity of the shingle sets when the texts are at hand
(candidates estimated within :data:`VERIFY_MARGIN` of the threshold are checked), else the
MinHash estimate.
The signature is the one-permutation variant of MinHash (one stable 64-bit hash per shingle split
into ``num_perm`` bins, empty bins filled by optimal densification), which costs O(shingles)
instead of O(shingles x num_perm) and estimates Jaccard like ``num_perm`` classic permutations.
Words and shingles are hashed with a fixed polynomial hash plus a 64-bit finalizer, vectorized with
numpy over whole chunks of texts, so results are deterministic across runs and machines (Python's
salted ``hash()`` is never used).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np

DedupMode = Literal["none", "exact", "near"]

SHORT_WORDS = 10  # texts with fewer words than this are shingled by byte 5-grams
CHAR_GRAM = 5
WORD_GRAM = 3
BIG_BUCKET = 48  # LSH buckets larger than this are linked leader+neighbour instead of all pairs
_CHUNK_BYTES = 2 << 20  # text hashed per numpy pass

_U64 = np.uint64
_EMPTY = np.uint32(0xFFFFFFFF)
_MASK32 = _U64(0xFFFFFFFF)
_MAX64 = (1 << 64) - 1
_ONES = _U64(_MAX64)
_M1, _M2 = _U64(0xFF51AFD7ED558CCD), _U64(0xC4CEB9FE1A85EC53)  # murmur3 fmix64
_SH = (_U64(0x9E3779B97F4A7C15), _U64(0xC2B2AE3D27D4EB4F), _U64(0x165667B19E3779F9))
_LEN_SALT = _U64(0x27D4EB2F165667C5)
_CHAR_TAG = _U64(0xA0761D6478BD642F)
_DENSIFY = np.uint32(0x9E3779B1)

# ----------------------------------------------------------------------------- canonical text


def content_text(content: Any) -> str:
    """A message's content as text (text parts of a list joined by newlines; None is "")."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "\n".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def _messages_text(messages: Any, prefix: str = "") -> list[str]:
    out = []
    for m in messages or ():
        if isinstance(m, dict):
            line = f"{prefix}{m.get('role', '?')}: {content_text(m.get('content'))}"
            if m.get("tool_calls"):
                line += " " + json.dumps(m["tool_calls"], ensure_ascii=False, sort_keys=True)
            out.append(line)
    return out


def example_text(data: dict) -> str:
    """Canonical text of a normalized example: ``role: content`` lines (prompt, chosen and rejected for preference)."""
    if "messages" in data:
        return "\n".join(_messages_text(data["messages"]))
    if "chosen" in data or "rejected" in data:
        lines = _messages_text(data.get("prompt"))
        lines += _messages_text(data.get("chosen"), "chosen ")
        lines += _messages_text(data.get("rejected"), "rejected ")
        return "\n".join(lines)
    if "completion" in data:
        label = "desirable" if data.get("label") else "undesirable"
        return "\n".join(_messages_text(data.get("prompt")) + _messages_text(data.get("completion"), f"{label} "))
    if "segments" in data:
        return "\n".join(content_text(s.get("text")) for s in data["segments"] if isinstance(s, dict))
    if "text" in data:
        return content_text(data["text"])
    return ""


# ----------------------------------------------------------------------------- exact duplicates


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


# ----------------------------------------------------------------------------- hashing helpers


def _fmix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _U64(33))
    h *= _M1
    h ^= h >> _U64(33)
    h *= _M2
    h ^= h >> _U64(33)
    return h


def _runs(counts: np.ndarray) -> np.ndarray:
    """0..c-1 for every c in counts, concatenated."""
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(total, dtype=np.int64) - starts


def _shingles(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(local doc index, 64-bit shingle hash) for every shingle of the texts.

    Words are maximal runs of ASCII letters/digits, '_' and non-ASCII bytes of the UTF-8 text,
    ASCII-lowercased. A word is hashed from its length and its first, middle and last 8 bytes
    (exact for words up to 24 bytes), so each word costs a few vectorized gathers.
    """
    bs = [t.encode("utf-8", "surrogatepass") for t in texts]
    n = len(bs)
    lens = np.fromiter(map(len, bs), dtype=np.int64, count=n)
    starts = np.ones(n, dtype=np.int64)  # byte 0 is a separator, so no word starts at 0
    if n > 1:
        starts[1:] = 1 + np.cumsum(lens + 1)[:-1]
    raw = (b"\x00" + b"\x00".join(bs) + b"\x00" * 9).lower()
    buf = np.frombuffer(raw, dtype=np.uint8)
    docs_out: list[np.ndarray] = []
    hashes_out: list[np.ndarray] = []

    is_word = (buf >= 0x80) | ((buf - np.uint8(97)) < 26) | ((buf - np.uint8(48)) < 10) | (buf == 95)
    edges = np.flatnonzero(np.diff(is_word.view(np.int8)) != 0) + 1  # alternately word start, word end
    w_start, w_end = edges[0::2], edges[1::2]
    n_words = np.diff(np.searchsorted(w_start, np.append(starts, len(buf))))
    if len(w_start):
        at = np.ndarray(shape=(len(buf) - 7,), dtype="<u8", buffer=raw, offset=0, strides=(1,))
        length = w_end - w_start
        head = at[w_start] & ~(_ONES << (np.minimum(length, 8) * 8).astype(np.uint64))
        h = head * _SH[0] + length.astype(np.uint64) * _LEN_SALT
        long_ = np.flatnonzero(length > 8)
        if len(long_):
            h[long_] += at[w_end[long_] - 8] * _SH[1]
            longer = long_[length[long_] > 16]
            h[longer] += at[w_start[longer] + length[longer] // 2 - 4] * _SH[2]
        wh = _fmix(h)
        wdoc = np.repeat(np.arange(n, dtype=np.int64), n_words)
    else:
        wh = np.zeros(0, dtype=np.uint64)
        wdoc = np.zeros(0, dtype=np.int64)

    long_doc = n_words >= SHORT_WORDS
    if len(wh) >= WORD_GRAM:
        ok = (wdoc[:-2] == wdoc[2:]) & np.repeat(long_doc, n_words)[:-2]
        h = wh[:-2] * _SH[0]
        h += wh[1:-1] * _SH[1]
        h += wh[2:] * _SH[2]
        docs_out.append(wdoc[:-2][ok])
        hashes_out.append(_fmix(h[ok]))

    # Short texts: byte 5-grams (the whole text when shorter), packed exactly into 40 bits.
    short = np.flatnonzero(~long_doc & (lens > 0))
    if len(short):
        s_len = lens[short]
        n_grams = np.maximum(s_len - CHAR_GRAM + 1, 1)
        gdoc = np.repeat(short, n_grams)
        pos = np.repeat(starts[short], n_grams) + _runs(n_grams)
        end = np.repeat(starts[short] + s_len, n_grams)
        g = np.zeros(len(pos), dtype=np.uint64)
        for i in range(CHAR_GRAM):
            p = pos + i
            b = np.where(p < end, buf[np.minimum(p, len(buf) - 1)], 0).astype(np.uint64)
            g |= b << _U64(8 * i)
        docs_out.append(gdoc)
        hashes_out.append(_fmix(g ^ _CHAR_TAG))

    if not docs_out:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint64)
    return np.concatenate(docs_out), np.concatenate(hashes_out)


def minhash_signatures(texts: Sequence[str], num_perm: int = 64) -> np.ndarray:
    """One-permutation MinHash signatures, shape (len(texts), num_perm), uint32.

    A row of all 0xFFFFFFFF means the text has no shingles (it is empty).
    """
    if num_perm < 1:
        raise ValueError("num_perm must be >= 1")
    n = len(texts)
    sig = np.full((n, num_perm), _EMPTY, dtype=np.uint32)
    if n == 0:
        return sig
    doc, h = _shingles(texts)
    if len(h):
        bins = ((h >> _U64(32)) % _U64(num_perm)).astype(np.uint64)
        key = ((doc.astype(np.uint64) * _U64(num_perm) + bins) << _U64(32)) | (h & _MASK32)
        key.sort()
        hi = key >> _U64(32)
        first = np.ones(len(key), dtype=bool)
        np.not_equal(hi[1:], hi[:-1], out=first[1:])
        sig.reshape(-1)[hi[first].astype(np.int64)] = (key[first] & _MASK32).astype(np.uint32)
    _densify(sig)
    return sig


def _densify(sig: np.ndarray, attempts: int = 64) -> None:
    """Fill empty bins in place ("optimal densification", Shrivastava 2017): empty bin i takes the value of
    bin src(i, t) for the first attempt t whose source bin is non-empty, src being one fixed hash for all
    texts; the few bins still empty after ``attempts`` take the next non-empty bin to the right."""
    k = sig.shape[1]
    empty = sig == _EMPTY
    n_empty = empty.sum(axis=1)
    rows = np.flatnonzero((n_empty > 0) & (n_empty < k))
    if not len(rows):
        return
    orig = sig[rows]
    out = orig.copy()
    todo_r, todo_c = np.nonzero(orig == _EMPTY)
    for t in range(1, attempts + 1):
        src = _src_bins(k, t)[todo_c]
        vals = orig[todo_r, src]
        ok = vals != _EMPTY
        out[todo_r[ok], todo_c[ok]] = vals[ok] + np.uint32((t * int(_DENSIFY)) & 0xFFFFFFFF)
        todo_r, todo_c = todo_r[~ok], todo_c[~ok]
        if not len(todo_r):
            break
    if len(todo_r):  # rotation for the rest
        full = np.concatenate([orig, orig], axis=1)
        idx = np.where(full != _EMPTY, np.arange(2 * k), 4 * k)
        nxt = np.minimum.accumulate(idx[:, ::-1], axis=1)[:, ::-1][todo_r, todo_c]
        out[todo_r, todo_c] = full[todo_r, nxt] + (nxt - todo_c).astype(np.uint32) * _DENSIFY + _DENSIFY
    sig[rows] = out


_SRC: dict[tuple[int, int], np.ndarray] = {}


def _src_bins(k: int, t: int) -> np.ndarray:
    """The source bin of every bin at densification attempt t (the same for every text)."""
    key = (k, t)
    if key not in _SRC:
        h = np.arange(k, dtype=np.uint64) * _SH[0] + _U64((t * int(_SH[1])) & _MAX64)
        _SRC[key] = (_fmix(h) % _U64(k)).astype(np.int64)
    return _SRC[key]


# ----------------------------------------------------------------------------- LSH


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


def shingle_sets(texts: Sequence[str]) -> list[np.ndarray]:
    """The sorted, distinct shingle hashes of each text (what the signatures summarize)."""
    out: list[np.ndarray] = []
    for sl in _byte_chunks(texts):
        chunk = texts[sl]
        doc, h = _shingles(chunk)
        order = np.lexsort((h, doc))
        doc, h = doc[order], h[order]
        keep = np.ones(len(h), dtype=bool)
        keep[1:] = (doc[1:] != doc[:-1]) | (h[1:] != h[:-1])
        doc, h = doc[keep], h[keep]
        bounds = np.searchsorted(doc, np.arange(len(chunk) + 1))
        out.extend(h[bounds[i] : bounds[i + 1]] for i in range(len(chunk)))
    return out


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


# ----------------------------------------------------------------------------- public API


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


def _byte_chunks(texts: Sequence[str]) -> Iterator[slice]:
    start, size = 0, 0
    for i, t in enumerate(texts):
        size += len(t)
        if size >= _CHUNK_BYTES:
            yield slice(start, i + 1)
            start, size = i + 1, 0
    if start < len(texts):
        yield slice(start, len(texts))


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
