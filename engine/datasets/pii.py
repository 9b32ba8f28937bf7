"""Personal data and secrets in training text: e-mail addresses, phone numbers, credit-card numbers,
IP addresses, API keys / tokens and private keys.

What counts, so that numbers in arithmetic and code samples do not: a card number passes the Luhn
check and is grouped like a card (4-4-4-4, 4-6-5) or has a card word near it ("card", "visa", "cvv"...);
a phone number has a phone's shape (separators, parentheses or a +country code) and is not an operand
of arithmetic ("17 +12345678901 = ..."); a secret has a known key shape (sk-..., AKIA..., ghp_..., xox...,
a PEM private key) or is a random-looking literal assigned to a key-ish name, never an expression
(``encoded_key = base64.b64encode(...)``, ``api_key = os.environ[...]``).

A vectorized numpy pass over a whole chunk of texts first marks, per text, which detectors could
match at all (a run of 7+ digit-ish characters with 4+ digits, a 16+ character token-like run, an
'@', two colons close together); the regexes then run only on those texts, so clean text costs a
few nanoseconds a byte. Patterns are ASCII-only (``[0-9]``, not Unicode ``\\d``). Findings are
reported redacted: the report never carries a full address, number or secret.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

KINDS = ("email", "phone", "credit_card", "ip", "api_key", "private_key")
# Overlapping findings: the earlier kind in this order wins (a key inside a URL is a key, not a phone).
_PRIORITY = {k: i for i, k in enumerate(("private_key", "api_key", "email", "credit_card", "ip", "phone"))}
MAX_IDS = 50
MAX_SAMPLES = 3

_EMAIL = re.compile(
    r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![\w-])"
)

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_NUMERIC = re.compile(
    # IPv4: exactly four valid octets, not part of a longer dotted run (versions like 1.2.3 or 1.2.3.4.5)
    rf"(?P<ip>(?<![\w.]){_OCTET}(?:\.{_OCTET}){{3}}(?!\.?\w))"
    # card: 13-19 digits, optional single spaces/dashes, starting like a real card (2-6)
    r"|(?P<cc>(?<![\w.+-])[2-6][0-9]{3}(?:[ -]?[0-9]){9,15}(?![\w]|[.-][0-9]))"
    # international: +CC then groups separated by space/dot/dash, area code maybe in parentheses
    r"|(?P<intl>(?<![\w+])\+[1-9][0-9]{0,2}(?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]{1,5})){1,6}(?![\w]|[.-][0-9]))"
    # North American: (415) 555-2671, 415-555-2671, 415.555.2671, 415 555 2671, 1-800-555-0199
    r"|(?P<nanp>(?<![\w.+-])(?:1[ .-])?(?:\([2-9][0-9]{2}\) ?[2-9][0-9]{2}[ .-]|[2-9][0-9]{2}(?P<s1>[ .-])[2-9][0-9]{2}"
    r"(?P=s1))[0-9]{4}(?![\w]|[.-][0-9]))"
    # national trunk-prefixed: 020 7946 0958, 030-1234-5678
    r"|(?P<natl>(?<![\w.+-])0[0-9]{1,4}(?P<s2>[ -])[0-9]{3,4}(?P=s2)[0-9]{3,4}(?![\w]|[.-][0-9]))"
)
# A run of 7+ digit-ish characters: the only places the numeric patterns can match.
_NUMERIC_RUN = re.compile(r"[0-9+(][0-9 .()+-]{5,}[0-9)]")

_HEX = frozenset("0123456789abcdefABCDEF")
_V6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
_IPV6 = re.compile(r"(?<![\w:.])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.[0-9]{1,3}){0,3}(?![\w:])")

_KEY_PREFIXES = ("sk-", "ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "AKIA", "ASIA", "hf_", "xox",
                 "AIza", "glpat-")  # fmt: skip
_KEYS = re.compile(
    r"(?<![\w-])(?:"
    r"sk-(?:proj-|ant-(?:api[0-9]{2}-)?|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{36,}"
    r"|github_pat_[A-Za-z0-9_]{22,}"
    r"|(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Za-z])"
    r"|hf_[A-Za-z0-9]{30,}"
    r"|xox[baprs]-[A-Za-z0-9-]{15,}"
    r"|AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"
    r"|glpat-[A-Za-z0-9_-]{20,}"
    r")"
)
# Generic secrets: a key-ish name, then an assignment of a long random-looking value.
_ASSIGN_WORDS = ("key", "secret", "token", "password", "passwd")
_NAME_BACK = re.compile(r"[A-Za-z0-9_.-]{0,40}$")
_ASSIGN_TAIL = re.compile(r"[A-Za-z0-9_]{0,20}[\"']?\s*(?::=|=>|[:=])\s*[\"'`]?(?P<value>[A-Za-z0-9_\-+/=.]{16,})")
# A quoted literal after the name: any characters but quotes and whitespace (passwords carry punctuation).
_ASSIGN_QUOTED = re.compile(
    r"[A-Za-z0-9_]{0,20}[\"']?\s*(?::=|=>|[:=])\s*(?P<q>[\"'`])(?P<value>[^\"'`\s]{12,200})(?P=q)")
_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")
_CARD_WORDS = re.compile(r"(?i)(?<![a-z])(?:card|visa|master\s?card|amex|american express|discover|credit|debit|"
                         r"cc|cvv|cvc|expiry|exp|payment|kreditkarte|karte|carte|tarjeta)(?![a-z])")
_ARITHMETIC = "=+*/<>^%\u00d7\u00f7"  # and the multiplication and division signs
_BEARER = re.compile(r"(?i)(?<![A-Za-z])bearer\s+(?P<value>[A-Za-z0-9_\-+/=.]{20,})")
_PRIVATE = re.compile(  # the whole block up to its END line, else the base64 lines that follow
    r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY((?: BLOCK)?)-----"
    r"(?:[\s\S]{0,20000}?-----END \1PRIVATE KEY\2-----|[A-Za-z0-9+/=:\s-]*)"
)
_KNOWN_PREFIX = re.compile(
    r"^(?:sk-(?:proj-|ant-(?:api[0-9]{2}-)?|svcacct-|admin-)?|gh[pousr]_|github_pat_|AKIA|ASIA|hf_|xox[baprs]-|AIza|glpat-)"
)


def luhn_ok(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_ok(s: str) -> bool:
    digits = re.sub(r"[^0-9]", "", s)
    if not 13 <= len(digits) <= 19 or len(set(digits)) < 2 or not luhn_ok(digits):
        return False
    groups = re.split(r"[ -]", s)
    if len(groups) == 1:
        return True
    if len({c for c in s if c in " -"}) > 1:
        return False
    sizes = [len(g) for g in groups]
    return sizes in ([4, 6, 5], [4, 6, 4]) or (all(z == 4 for z in sizes[:-1]) and 1 <= sizes[-1] <= 4)


def _card_context(text: str, start: int, end: int, s: str) -> bool:
    """Whether a Luhn-valid number is a card: grouped like one, or with a card word shortly before or after it,
    and not an operand of arithmetic."""
    if _in_arithmetic(text, start, end, s):
        return False
    if len(re.split(r"[ -]", s)) > 1:
        return True  # _card_ok checked the grouping
    return _CARD_WORDS.search(text, max(0, start - 48), start) is not None or \
        _CARD_WORDS.search(text, end, min(len(text), end + 24)) is not None  # fmt: skip


def _in_arithmetic(text: str, start: int, end: int, s: str) -> bool:
    """Whether the number at text[start:end] is an operand: an operator or '=' next to it, or (for '+NNN') a number
    right before it, which makes the '+' an addition, not a country code."""
    before = text[:start].rstrip()
    after = text[end:].lstrip()
    prev, nxt = before[-1:], after[:1]
    if (prev and prev in _ARITHMETIC) or (nxt and nxt in _ARITHMETIC):
        return True
    if s.startswith("+") and prev and (prev.isdigit() or prev == ")"):
        return True
    if nxt == "-" and after[1:].lstrip()[:1].isdigit() and after[1:2] == " ":
        return True  # "... - 3": a subtraction
    return prev == "-" and before[:-1].rstrip()[-1:].isdigit() and text[start - 1: start] == " "


def _phone_ok(text: str, start: int, end: int, s: str) -> bool:
    n = sum(c.isdigit() for c in s)
    if not (8 <= n <= 15 if s.startswith("+") else 10 <= n <= 12):
        return False
    return not _in_arithmetic(text, start, end, s)


def _ip_ok(s: str) -> bool:
    try:
        ip = ipaddress.ip_address(s)
    except ValueError:
        return False
    return not (ip.is_loopback or ip.is_unspecified or ip.is_reserved or ip.is_multicast)


def _entropy(s: str) -> float:
    counts = Counter(s)
    return -sum(c / len(s) * math.log2(c / len(s)) for c in counts.values())


def _literal(text: str, m: re.Match[str]) -> bool:
    """Whether an assigned value is a literal, not code: not called or indexed, not an attribute path
    (``base64.b64encode``, ``os.environ``) unless its parts are as long as a token's (a JWT's)."""
    value = m.group("value")
    if m.groupdict().get("q"):
        return True  # quoted: a string literal
    if text[m.end("value") : m.end("value") + 1] in ("(", "["):
        return False
    if _DOTTED.fullmatch(value):
        parts = value.split(".")
        return sum(map(len, parts)) / len(parts) >= 16
    return True


def _random_looking(value: str) -> bool:
    """A secret-like value: letters and digits mixed, not a placeholder, enough entropy."""
    if not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
        return False
    low = value.lower()
    if any(w in low for w in ("your", "xxxx", "example", "placeholder", "changeme", "dummy")):
        return False
    return _entropy(value) >= 3.0


def _key_ok(s: str) -> bool:
    if not s.startswith("sk-"):
        return True  # the other prefixes are specific enough
    body = _KNOWN_PREFIX.sub("", s)  # "sk-" + hyphenated words ("sk-learn-compatible-...") is not a key
    longest = max((len(r) for r in re.findall(r"[A-Za-z0-9]+", body)), default=0)
    return longest >= 16 and any(c.isdigit() for c in body)


# ----------------------------------------------------------------------------- prefilter

_F_NUMERIC, _F_TOKEN, _F_AT, _F_COLON = 1, 2, 4, 8


def prefilter(texts: Sequence[str]) -> np.ndarray:
    """Per text, bit flags of the detector families that could match, from a few numpy passes over the bytes.

    Each flag is a necessary condition of its patterns: numeric (8 digits within 31 bytes, as in every
    phone and card number, or three ``digit.digit`` dots within 9 bytes, as in every IPv4 address), token
    (16+ bytes without whitespace: every key pattern needs a run of key characters that long), '@'
    (e-mail), and two colons at most 5 bytes apart (IPv6).
    """
    bs = [t.encode("utf-8", "surrogatepass") for t in texts]
    flags = np.zeros(len(bs), dtype=np.uint8)
    if not bs:
        return flags
    lens = np.fromiter(map(len, bs), dtype=np.int64, count=len(bs))
    starts = np.zeros(len(bs), dtype=np.int64)
    starts[1:] = np.cumsum(lens + 1)[:-1]
    buf = np.frombuffer(b"\x00".join(bs) + b"\x00", dtype=np.uint8)  # texts never share a run

    def mark(positions: np.ndarray, flag: int) -> None:
        if len(positions):
            flags[np.searchsorted(starts, positions, side="right") - 1] |= flag

    is_digit = (buf - np.uint8(48)) < 10
    digits = np.flatnonzero(is_digit)
    if len(digits) >= 8:  # phones and cards: 8+ digits, at most 3 separator bytes between two of them
        mark(digits[:-7][digits[7:] - digits[:-7] <= 30], _F_NUMERIC)
    dots = np.flatnonzero(buf[1:-1] == ord(".")) + 1
    dots = dots[is_digit[dots - 1] & is_digit[dots + 1]]
    if len(dots) >= 3:  # IPv4: three digit.digit dots within 9 bytes
        mark(dots[:-2][dots[2:] - dots[:-2] <= 8], _F_NUMERIC)
    breaks = np.concatenate(([-1], np.flatnonzero(buf <= 32)))  # whitespace, and the \x00 separators
    mark(breaks[:-1][np.diff(breaks) > 16] + 1, _F_TOKEN)
    mark(np.flatnonzero(buf == ord("@")), _F_AT)
    colons = np.flatnonzero(buf == ord(":"))
    if len(colons) > 1:
        mark(colons[1:][np.diff(colons) <= 5], _F_COLON)
    return flags


# ----------------------------------------------------------------------------- detection


def _find_all(hay: str, needle: str) -> list[int]:
    out, i = [], hay.find(needle)
    while i >= 0:
        out.append(i)
        i = hay.find(needle, i + 1)
    return out


def _assignments(text: str) -> list[tuple[int, int, str, str]]:
    found = []
    low = text.lower()
    for w in _ASSIGN_WORDS:
        for p in _find_all(low, w):
            before = low[p - 1] if p else " "
            if before.isalpha() and not (w == "key" and low.endswith("api", 0, p)):
                continue  # inside another word ("monkey")
            m = _ASSIGN_QUOTED.match(text, p + len(w)) or _ASSIGN_TAIL.match(text, p + len(w))
            if m and _random_looking(m.group("value")) and _literal(text, m):
                name = _NAME_BACK.search(text, 0, p).group() + text[p : p + len(w)]
                found.append((m.start("value"), m.end("value"), "api_key", f"{name} = {m.group('value')}"))
    if "bearer" in low:
        for m in _BEARER.finditer(text):
            if _random_looking(m.group("value")):
                found.append((m.start("value"), m.end("value"), "api_key", f"Bearer = {m.group('value')}"))
    return found


def _find(text: str, flags: int) -> list[tuple[str, str]]:
    found: list[tuple[int, int, str, str]] = []  # start, end, kind, value
    if "PRIVATE KEY" in text:
        found += [(m.start(), m.end(), "private_key", m.group()) for m in _PRIVATE.finditer(text)]
    if flags & _F_TOKEN:
        for prefix in _KEY_PREFIXES:
            if prefix in text:
                for p in _find_all(text, prefix):
                    m = _KEYS.match(text, p)
                    if m and _key_ok(m.group()):
                        found.append((m.start(), m.end(), "api_key", m.group()))
        found += _assignments(text)
    if flags & _F_AT:
        spans = set()
        for p in _find_all(text, "@"):
            for m in _EMAIL.finditer(text, max(0, p - 66), min(len(text), p + 260)):
                if m.span() not in spans:
                    spans.add(m.span())
                    found.append((m.start(), m.end(), "email", m.group()))
    if flags & _F_NUMERIC:
        for run in _NUMERIC_RUN.finditer(text):
            for m in _NUMERIC.finditer(text, run.start(), min(len(text), run.end() + 2)):
                s = m.group()
                if m.group("ip") is not None:
                    if _ip_ok(s):
                        found.append((m.start(), m.end(), "ip", s))
                elif m.group("cc") is not None:
                    if _card_ok(s) and _card_context(text, m.start(), m.end(), s):
                        found.append((m.start(), m.end(), "credit_card", s))
                elif _phone_ok(text, m.start(), m.end(), s):
                    found.append((m.start(), m.end(), "phone", s))
    if flags & _F_COLON:
        last_end = -1
        for hint in _V6_HINT.finditer(text):
            if hint.start() < last_end:
                continue
            b = hint.start()
            while b > 0 and b > hint.start() - 4 and text[b - 1] in _HEX:
                b -= 1
            m = _IPV6.match(text, b)
            if m:
                last_end = m.end()
                if m.group().count(":") >= 2 and _ip_ok(m.group()):
                    found.append((m.start(), m.end(), "ip", m.group()))
    if len(found) > 1:
        found.sort(key=lambda f: (_PRIORITY[f[2]], f[0]))
        kept: list[tuple[int, int, str, str]] = []
        for f in found:
            if all(f[1] <= k[0] or f[0] >= k[1] for k in kept):
                kept.append(f)
        found = sorted(kept)
    return [(kind, value) for _, _, kind, value in found]


def find_pii(text: str) -> list[tuple[str, str]]:
    """Findings ``(kind, matched text)`` in order of position; kinds are :data:`KINDS`.

    Generic secret assignments are reported as ``name = value``.
    """
    return _find(text, int(prefilter([text])[0]))


def find_pii_many(texts: Sequence[str]) -> list[list[tuple[str, str]]]:
    """:func:`find_pii` for many texts at once (one vectorized prefilter pass)."""
    return [_find(t, int(f)) if f or "PRIVATE KEY" in t else [] for t, f in zip(texts, prefilter(texts), strict=True)]


# ----------------------------------------------------------------------------- redaction


def _stars(s: str, keep_last: int) -> str:
    """Digits replaced by '*' except the last ``keep_last`` ones; separators kept."""
    total = sum(c.isdigit() for c in s)
    out, seen = [], 0
    for c in s:
        if c.isdigit():
            seen += 1
            out.append(c if seen > total - keep_last else "*")
        else:
            out.append(c)
    return "".join(out)


def redact(kind: str, value: str) -> str:
    """A form of ``value`` fit for a report: enough to recognise the kind, never the secret itself."""
    if kind == "email":
        local, _, domain = value.partition("@")
        name, _, tld = domain.rpartition(".")
        return f"{local[:1]}***@{name[:1]}***.{tld}"
    if kind == "phone":
        return _stars(value, 2)
    if kind == "credit_card":
        return _stars(value, 4)
    if kind == "ip":
        if ":" in value:
            return value.split(":", 1)[0] + ":****:****"
        return value.split(".", 1)[0] + ".*.*.*"
    if kind == "private_key":
        return value[: value.index("-----", 5) + 5] + " ****"
    if kind == "api_key":
        name, sep, secret = value.partition(" = ")
        if sep:
            return f"{name} = **** ({len(secret)} chars)"
        prefix = _KNOWN_PREFIX.match(value)
        return f"{prefix.group() if prefix else ''}**** ({len(value)} chars)"
    return "****"


# ----------------------------------------------------------------------------- scanning


class PiiScanner:
    """Accumulates findings over ``(id, text)`` pairs; ``result()`` gives the report section."""

    def __init__(self) -> None:
        self._count: Counter[str] = Counter()
        self._ids: dict[str, list[int]] = {k: [] for k in KINDS}
        self._n_ids: Counter[str] = Counter()
        self._samples: dict[str, list[str]] = {k: [] for k in KINDS}
        self.flagged: set[int] = set()  # every example with any finding (for the preview's filter)

    def add(self, example_id: int, text: str) -> None:
        """Scan one text."""
        self._record(example_id, find_pii(text))

    def add_many(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        """Scan a chunk of texts (faster than one by one)."""
        for example_id, findings in zip(ids, find_pii_many(texts), strict=True):
            if findings:
                self._record(example_id, findings)

    def _record(self, example_id: int, findings: list[tuple[str, str]]) -> None:
        if not findings:
            return
        kinds_here: set[str] = set()
        for kind, value in findings:
            self._count[kind] += 1
            kinds_here.add(kind)
            samples = self._samples[kind]
            if len(samples) < MAX_SAMPLES:
                r = redact(kind, value)
                if r not in samples:
                    samples.append(r)
        self.flagged.add(int(example_id))
        for kind in kinds_here:
            self._n_ids[kind] += 1
            if len(self._ids[kind]) < MAX_IDS:
                self._ids[kind].append(int(example_id))

    def result(self) -> dict[str, dict[str, Any]]:
        """Per kind: count (findings), examples (records holding one), ids (first 50), samples (redacted)."""
        return {
            k: {"count": self._count[k], "examples": self._n_ids[k], "ids": list(self._ids[k]),
                "samples": list(self._samples[k])}
            for k in KINDS
        }  # fmt: skip


def scan(examples: Iterable[tuple[int, str]]) -> dict[str, dict[str, Any]]:
    """Scan ``(id, text)`` pairs: per kind ``{"count", "examples", "ids", "samples"}`` (ids capped at 50)."""
    scanner = PiiScanner()
    ids: list[int] = []
    texts: list[str] = []
    for example_id, text in examples:
        ids.append(example_id)
        texts.append(text)
        if len(texts) >= 2000:
            scanner.add_many(ids, texts)
            ids, texts = [], []
    scanner.add_many(ids, texts)
    return scanner.result()


# ----------------------------------------------------------------------------- measuring the detectors


def score_labelled(labelled: Iterable[tuple[str, Sequence[str]]]) -> dict[str, dict[str, float]]:
    """Precision and recall of the detectors on texts labelled with the kinds they hold, per kind and over all
    (key ``all``): a kind found in a text that holds it is a true positive, found where it is not labelled a false
    positive, labelled but not found a false negative. Each value: tp, fp, fn, precision, recall."""
    counts: dict[str, Counter[str]] = {k: Counter() for k in (*KINDS, "all")}
    for text, kinds in labelled:
        found, want = {k for k, _ in find_pii(text)}, set(kinds)
        for kind in found | want:
            outcome = "tp" if kind in found and kind in want else "fp" if kind in found else "fn"
            counts[kind][outcome] += 1
            counts["all"][outcome] += 1
    out = {}
    for kind, c in counts.items():
        tp, fp, fn = c["tp"], c["fp"], c["fn"]
        out[kind] = {"tp": tp, "fp": fp, "fn": fn, "precision": tp / (tp + fp) if tp + fp else 1.0,
                     "recall": tp / (tp + fn) if tp + fn else 1.0}
    return out
