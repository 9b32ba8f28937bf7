"""The lint report of an imported dataset: structure, duplicates, personal data, token lengths, the
label mask of a sample, and the checklist of a good fine-tuning set with an overall verdict.

:func:`build_report` makes one streaming pass over the examples in chunks (canonical text, exact
digest, MinHash signature, PII prefilter and token lengths per chunk), so beyond the examples
themselves memory holds only digests, signatures and lengths. The report is plain JSON;
:mod:`engine.datasets.lint_checklist` judges it and :mod:`engine.datasets.lint_report` renders it for
people (the CLI and the TUI alike).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from engine.datasets.dedup import VERIFY_MARGIN, NearDuplicateIndex, drop_set, exact_key, example_text, lsh_params
from engine.datasets.lint_checklist import checklist, verdict
from engine.datasets.pii import PiiScanner

REPORT_VERSION = 1
CHUNK = 2000
MAX_IDS = 50
NUM_PERM = 64
MASK_TOKENS = 512  # tokens of the label-mask sample kept in the report

Progress = Callable[[str, float], None]


def _snippet(text: str, width: int = 72) -> str:
    s = " ".join(text.split())
    return s if len(s) <= width else s[: width - 1] + "…"


def _diff_snippets(a: str, b: str, width: int = 72) -> tuple[str, str]:
    """Both texts from a little before their first difference."""
    a, b = " ".join(a.split()), " ".join(b.split())
    same = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    start = max(0, same - 24)

    def cut(s: str) -> str:
        return ("…" + _snippet(s[start:], width - 1)) if start else _snippet(s, width)

    return cut(a), cut(b)


class _Ids:
    """A count and the first few ids."""

    def __init__(self) -> None:
        self.count = 0
        self.ids: list[int] = []

    def add(self, i: int) -> None:
        self.count += 1
        if len(self.ids) < MAX_IDS:
            self.ids.append(i)

    def as_dict(self) -> dict[str, Any]:
        return {"count": self.count, "ids": list(self.ids)}


class _Structure:
    """Turns, roles and structural problems of normalized examples."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.turns: list[int] = []
        self.chars: list[int] = []
        self.roles: dict[str, list[int]] = {}  # role -> [turns, chars]
        self.issues: dict[str, _Ids] = {}
        self.system = 0
        self.multi_turn = 0
        self.with_tools = 0
        self.labels = {"desirable": 0, "undesirable": 0}  # kto

    def _issue(self, name: str, i: int) -> None:
        self.issues.setdefault(name, _Ids()).add(i)

    def _messages(self, msgs: Any, i: int) -> list[dict]:
        msgs = [m for m in (msgs or ()) if isinstance(m, dict)]
        for m in msgs:
            c = m.get("content")
            text = c if isinstance(c, str) else ("" if c is None else str(c))
            r = self.roles.setdefault(str(m.get("role", "?")), [0, 0])
            r[0] += 1
            r[1] += len(text)
        if any(not (m.get("content") if isinstance(m.get("content"), str) else str(m.get("content") or "")).strip()
               for m in msgs):  # fmt: skip
            self._issue("empty_content", i)
        return msgs

    def add(self, i: int, data: dict, text: str) -> None:
        self.chars.append(len(text))
        if self.kind == "sft" and "segments" in data:
            segments = [s for s in data.get("segments") or () if isinstance(s, dict)]
            self.turns.append(len(segments))
            for seg in segments:
                r = self.roles.setdefault("trained" if seg.get("label") else "context", [0, 0])
                r[0] += 1
                r[1] += len(str(seg.get("text", "")))
            if not any(seg.get("label") for seg in segments):
                self._issue("no_assistant_turn", i)
        elif self.kind == "sft":
            msgs = self._messages(data.get("messages"), i)
            if data.get("tools") or any(m.get("tool_calls") for m in msgs):
                self.with_tools += 1
            self.turns.append(len(msgs))
            roles = [m.get("role") for m in msgs]
            if "system" in roles:
                self.system += 1
            n_assistant = roles.count("assistant")
            if n_assistant == 0:
                self._issue("no_assistant_turn", i)
            elif roles[-1] != "assistant":
                self._issue("ends_without_assistant", i)
            if n_assistant > 1:
                self.multi_turn += 1
            if any(a == b for a, b in itertools.pairwise(roles)):
                self._issue("repeated_role", i)
        elif self.kind == "preference":
            prompt = self._messages(data.get("prompt"), i)
            chosen = self._messages(data.get("chosen"), i)
            rejected = self._messages(data.get("rejected"), i)
            self.turns.append(len(prompt) + len(chosen))
            if any(m.get("role") == "system" for m in prompt):
                self.system += 1
            if not chosen or not rejected:
                self._issue("missing_completion", i)
            elif [m.get("content") for m in chosen] == [m.get("content") for m in rejected]:
                self._issue("chosen_equals_rejected", i)
        elif self.kind == "kto":
            prompt = self._messages(data.get("prompt"), i)
            completion = self._messages(data.get("completion"), i)
            self.turns.append(len(prompt) + len(completion))
            if any(m.get("role") == "system" for m in prompt):
                self.system += 1
            if not completion:
                self._issue("missing_completion", i)
            self.labels["desirable" if data.get("label") else "undesirable"] += 1
        elif not text.strip():
            self._issue("empty_text", i)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.turns:
            t = np.asarray(self.turns)
            out["turns"] = {"min": int(t.min()), "mean": round(float(t.mean()), 2), "max": int(t.max())}
        else:
            out["turns"] = None
        c = np.asarray(self.chars) if self.chars else np.zeros(1, dtype=np.int64)
        out["chars"] = {"min": int(c.min()), "mean": round(float(c.mean()), 1), "max": int(c.max())}
        total_turns = sum(v[0] for v in self.roles.values()) or 1
        total_chars = sum(v[1] for v in self.roles.values()) or 1
        out["roles"] = {
            role: {"turns": v[0], "turn_share": round(v[0] / total_turns, 4), "chars": v[1],
                   "char_share": round(v[1] / total_chars, 4), "mean_chars": round(v[1] / v[0], 1) if v[0] else 0.0}
            for role, v in sorted(self.roles.items(), key=lambda kv: -kv[1][0])
        }  # fmt: skip
        out["with_system_prompt"] = self.system
        out["multi_turn"] = self.multi_turn
        out["with_tools"] = self.with_tools
        if self.kind == "kto":
            out["labels"] = dict(self.labels)
        out["issues"] = {k: v.as_dict() for k, v in self.issues.items()}
        return out


def build_report(
    train: Sequence[dict],
    val: Sequence[dict],
    *,
    fmt: str,
    kind: str,
    tokenizer: Any = None,
    max_length: int = 2048,
    near_threshold: float = 0.85,
    dropped: dict[str, int] | None = None,
    progress: Progress | None = None,
    token_sample: int | None = None,
    unused: dict[str, int] | None = None,
) -> dict[str, Any]:
    """The lint report (JSON-serializable) of normalized ``train`` and ``val`` examples.

    Examples are referred to by their ``id`` (their position in ``train + val`` when absent).
    Token lengths are exact for every example by default; with ``token_sample`` and a larger set,
    min/median/p95/mean/histogram come from that many evenly spaced examples, while ``over_max``
    stays exact (every example that could exceed ``max_length`` by its byte count is tokenized).
    ``dropped`` counts records left out before this report, by reason (e.g. ``{"invalid": 3,
    "mixed_format": 2, "exact_duplicate": 10}``): reasons containing "dup" count as deduplication,
    all others as format problems. ``unused`` counts, per field of the source the import left out, the
    records holding it (reported, and warned about in the checklist). ``progress(stage, fraction)`` is
    called as the work advances.
    """
    t_start = time.perf_counter()
    dropped = {str(k): int(v) for k, v in (dropped or {}).items()}
    n_train, n_val = len(train), len(val)
    total = n_train + n_val
    say = progress or (lambda stage, fraction: None)
    timings = dict.fromkeys(("structure", "exact", "near", "pii", "tokens", "label_mask"), 0.0)

    def get(g: int) -> dict:
        return train[g] if g < n_train else val[g - n_train]

    ids = np.zeros(total, dtype=np.int64)
    structure = _Structure(kind)
    first_of: dict[bytes, int] = {}
    groups: dict[int, list[int]] = {}
    near = NearDuplicateIndex(NUM_PERM)
    scanner = PiiScanner()
    counter = None
    lengths = np.zeros(total, dtype=np.int64)
    sample_mask = None
    if token_sample is not None and total > token_sample > 0:
        sample_mask = np.zeros(total, dtype=bool)
        sample_mask[np.linspace(0, total - 1, token_sample).round().astype(np.int64)] = True
    if tokenizer is not None:
        from engine.datasets.tokens import TokenCounter

        counter = TokenCounter(tokenizer, kind)

    say("scanning", 0.0)
    for c0 in range(0, total, CHUNK):
        chunk = [get(g) for g in range(c0, min(total, c0 + CHUNK))]
        t = time.perf_counter()
        texts = []
        for k, ex in enumerate(chunk):
            g = c0 + k
            ids[g] = int(ex.get("id", g))
            text = example_text(ex)
            texts.append(text)
            structure.add(int(ids[g]), ex, text)
        t2 = time.perf_counter()
        timings["structure"] += t2 - t
        skip = []
        for k, text in enumerate(texts):
            key = exact_key(text)
            first = first_of.setdefault(key, c0 + k)
            if first != c0 + k:
                groups.setdefault(first, [first]).append(c0 + k)
            skip.append(first != c0 + k)
        t3 = time.perf_counter()
        timings["exact"] += t3 - t2
        near.add(texts, skip)
        t4 = time.perf_counter()
        timings["near"] += t4 - t3
        scanner.add_many(ids[c0 : c0 + len(chunk)].tolist(), texts)
        t5 = time.perf_counter()
        timings["pii"] += t5 - t4
        if counter is not None:
            if sample_mask is None:
                lengths[c0 : c0 + len(chunk)] = counter.add(chunk)
            else:
                lengths[c0 : c0 + len(chunk)] = counter.add(chunk, sample_mask[c0 : c0 + len(chunk)], max_length)
            timings["tokens"] += time.perf_counter() - t5
        say("scanning", 0.9 * min(total, c0 + CHUNK) / total)

    say("near-duplicates", 0.9)
    t = time.perf_counter()
    pairs = near.pairs(near_threshold, lambda g: example_text(get(g)))
    timings["near"] += time.perf_counter() - t
    group_list = sorted(groups.values())
    exact_drop = drop_set(group_list)
    near_drop = drop_set(group_list, pairs) - exact_drop

    report: dict[str, Any] = {
        "version": REPORT_VERSION,
        "format": fmt,
        "kind": kind,
        "counts": {"train": n_train, "val": n_val, "total": total, "dropped": dropped},
        "fields": {"unused": dict(unused or {})},
    }
    report["structure"] = structure.result()

    # duplicates, and validation examples that repeat training ones
    val_overlap = _Ids()
    leaked: set[int] = set()
    for g in group_list:
        if g[0] < n_train:
            leaked.update(x for x in g if x >= n_train)
    for a, b, _ in pairs:
        if a < n_train <= b:
            leaked.add(b)
    for g in sorted(leaked):
        val_overlap.add(int(ids[g]))
    bands, rows = lsh_params(max(near_threshold - VERIFY_MARGIN, 0.05), NUM_PERM)
    report["duplicates"] = {
        "exact": {
            "groups": len(group_list),
            "duplicates": len(exact_drop),
            "examples": [{"ids": [int(ids[g[0]]), int(ids[g[1]])], "group_size": len(g),
                          "text": _snippet(example_text(get(g[0])))} for g in group_list[:5]],
        },
        "near": {
            "threshold": near_threshold,
            "pairs": len(pairs),
            "duplicates": len(near_drop),
            "method": f"Jaccard of word 3-grams; MinHash ({NUM_PERM} bins) + LSH {bands}x{rows} candidates",
            "examples": [{"ids": [int(ids[a]), int(ids[b])], "similarity": s,
                          "texts": list(_diff_snippets(example_text(get(a)), example_text(get(b))))}
                         for a, b, s in pairs[:5]],
        },
        "val_overlap": val_overlap.as_dict(),
    }
    report["pii"] = scanner.result()

    if counter is None:
        report["tokens"] = {"skipped": "no tokenizer given"}
    else:
        stats = _length_stats(lengths, max_length, ids, sample_mask)
        report["tokens"] = {
            "tokenizer": str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__),
            "chat_template": counter.renderer.template,
            "note": counter.note,
            **stats,
            "template_errors": {"count": counter.template_errors, "ids": counter.template_error_ids},
            "template_error": counter.template_error,
            "control_tokens_in_content": {"count": counter.control_tokens, "ids": counter.control_token_ids},
        }

    say("label mask", 0.97)
    t = time.perf_counter()
    report["label_mask"] = _label_mask_section(tokenizer, kind, train, val)
    timings["label_mask"] = time.perf_counter() - t

    report["flags"] = {
        "exact_duplicate": sorted({int(ids[x]) for g in group_list for x in g}),
        "near_duplicate": sorted({int(ids[x]) for a, b, _ in pairs for x in (a, b)}),
        "pii": sorted(scanner.flagged),
        "too_long": [int(i) for i in ids[lengths > max_length]] if counter is not None else [],
        "masked_out": _masked_out(tokenizer, kind, get, lengths, max_length, ids) if counter is not None else [],
    }
    report["checklist"] = checklist(report, dropped)
    report["verdict"] = verdict(report["checklist"])
    timings["total"] = time.perf_counter() - t_start
    report["timings"] = {k: round(v, 3) for k, v in timings.items()}
    say("done", 1.0)
    return report


def _masked_out(tokenizer: Any, kind: str, get: Callable[[int], dict], lengths: np.ndarray, max_length: int,
                ids: np.ndarray) -> list[int]:
    """Ids of SFT examples that truncation to max_length leaves with no assistant token to learn from.

    Only examples longer than max_length can be affected. A prompt (everything before the first
    assistant turn, with the generation prompt) has at most as many tokens as its rendered bytes,
    so only prompts whose contents plus a generous template allowance reach max_length bytes are
    rendered with the real template and tokenized, in one batch.
    """
    if kind != "sft":
        return []

    def prompt_of(messages: list[dict]) -> list[dict] | None:
        first = next((k for k, m in enumerate(messages) if m.get("role") == "assistant"), None)
        return None if first is None else messages[:first]

    def content_bytes(messages: list[dict]) -> int:
        return sum(len(str(m.get("content", "")).encode()) for m in messages)

    def render(messages: list[dict], tools: list[dict] | None = None) -> str | None:
        try:
            return tokenizer.apply_chat_template(messages, tools=tools or None, tokenize=False,
                                                 add_generation_prompt=True)
        except Exception:  # a template that cannot render is reported elsewhere
            return None

    candidates: list[tuple[int, str]] = []
    allowance: int | None = None
    for g in np.flatnonzero(lengths > max_length):
        example = get(int(g))
        prompt = prompt_of(example.get("messages") or [])
        if not prompt:
            continue
        if allowance is None:  # what the template adds around contents, measured once, doubled for safety
            text = render(prompt, example.get("tools"))
            allowance = 2 * max(0, len(text.encode()) - content_bytes(prompt)) + 64 if text is not None else 0
        if content_bytes(prompt) + allowance < max_length:
            continue
        text = render(prompt, example.get("tools"))
        if text is not None:
            candidates.append((int(ids[g]), text))
    if not candidates:
        return []
    encoded = tokenizer([t for _, t in candidates], add_special_tokens=False)["input_ids"]
    return [i for (i, _), toks in zip(candidates, encoded, strict=True) if len(toks) >= max_length]


def _length_stats(lengths: np.ndarray, max_length: int, ids: np.ndarray, sample: np.ndarray | None) -> dict[str, Any]:
    from engine.datasets.tokens import length_stats

    if sample is None:
        return {**length_stats(lengths, max_length, ids.tolist()), "sampled": None, "measured": len(lengths)}
    stats = length_stats(lengths[sample], max_length, ids[sample].tolist())
    over = np.flatnonzero(lengths > max_length)  # exact: every example that could exceed was measured
    stats["over_max"] = len(over)
    stats["over_max_ids"] = [int(i) for i in ids[over[:MAX_IDS]]]
    stats["max"] = max(stats["max"], int(lengths.max()))
    stats["total"] = round(stats["mean"] * len(lengths))  # an estimate
    stats["count"] = len(lengths)
    return {**stats, "sampled": int(sample.sum()), "measured": int((lengths >= 0).sum())}


def _label_mask_section(tokenizer: Any, kind: str, train: Sequence[dict], val: Sequence[dict]) -> dict[str, Any]:
    if kind != "sft":
        why = {"preference": "preference data trains on the chosen/rejected completions",
               "kto": "KTO data trains on the completions"}.get(kind, "plain text trains on every token")
        return {"skipped": why}
    if tokenizer is None:
        return {"skipped": "no tokenizer given"}
    from engine.datasets.tokens import has_chat_template, label_mask, mask_runs, mask_summary, render_mask

    if not has_chat_template(tokenizer):
        return {"skipped": "the tokenizer has no chat template"}
    sample = next((ex for split in (train, val) for ex in split
                   if any(isinstance(m, dict) and m.get("role") == "assistant" for m in ex.get("messages") or ())),
                  None)  # fmt: skip
    if sample is None:
        return {"skipped": "no example with an assistant turn"}
    try:
        pairs = label_mask(tokenizer, sample["messages"], max_tokens=MASK_TOKENS + 1, tools=sample.get("tools"))
    except Exception as e:  # a template that rejects the sample, a slow tokenizer
        return {"skipped": f"{type(e).__name__}: {e}"[:300]}
    truncated = len(pairs) > MASK_TOKENS
    pairs = pairs[:MASK_TOKENS]
    summary = mask_summary(pairs)
    return {
        "sample_id": int(sample.get("id", 0)),
        "rendered": render_mask(pairs, legend=False),
        "runs": [[text, trained] for text, trained in mask_runs(pairs)],
        "trained": summary["trained"],
        "masked": summary["masked"],
        "tokens": summary["tokens"],
        "truncated": truncated,
    }
