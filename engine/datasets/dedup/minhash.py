"""MinHash signatures: word 3-gram shingles (byte 5-grams for texts of fewer than :data:`SHORT_WORDS` words),
hashed with a fixed polynomial hash plus a 64-bit finalizer, vectorized with numpy over whole chunks of texts, so
results are deterministic across runs and machines (Python's salted ``hash()`` is never used).

The signature is the one-permutation variant of MinHash (one stable 64-bit hash per shingle split into
``num_perm`` bins, empty bins filled by optimal densification), which costs O(shingles) instead of
O(shingles x num_perm) and estimates Jaccard like ``num_perm`` classic permutations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

SHORT_WORDS = 10  # texts with fewer words than this are shingled by byte 5-grams
CHAR_GRAM = 5
WORD_GRAM = 3
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


def _byte_chunks(texts: Sequence[str]) -> Iterator[slice]:
    start, size = 0, 0
    for i, t in enumerate(texts):
        size += len(t)
        if size >= _CHUNK_BYTES:
            yield slice(start, i + 1)
            start, size = i + 1, 0
    if start < len(texts):
        yield slice(start, len(texts))
