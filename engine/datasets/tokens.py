"""Token lengths with the model's own tokenizer and chat template, and the label mask of a sample.

Lengths are measured the way training sees an example: the chat template renders the messages
(``apply_chat_template(..., tokenize=False)``), then the text is encoded with
``add_special_tokens=False`` (the template writes BOS and the turn markers itself; transformers 5
does the same in ``apply_chat_template(tokenize=True)``, whose ``sanitize_control_tokens`` is off by
default). Plain text examples are encoded with the tokenizer's own special tokens.

Speed: the compiled Jinja template is called directly and the Rust tokenizer encodes batches of
256 on all cores; both shortcuts are first checked against the public transformers calls on the
first conversations of every call, and dropped if they disagree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.datasets.dedup import content_text
from store.errors import TunedeckError

BATCH = 256
MAX_IDS = 50
_CHECK = 3  # conversations compared between the fast paths and the public calls


def load_tokenizer(name_or_path: str):
    """A tokenizer from a local directory, a ``.gguf`` file, or the local Hugging Face cache.

    Never downloads and never runs code from the model repository (``trust_remote_code=False``).
    """
    from transformers import AutoTokenizer

    path = Path(name_or_path).expanduser()
    try:
        if path.is_file() and path.suffix == ".gguf":
            return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, trust_remote_code=False)
        if path.exists():
            return AutoTokenizer.from_pretrained(str(path), trust_remote_code=False)
        return AutoTokenizer.from_pretrained(name_or_path, local_files_only=True, trust_remote_code=False)
    except OSError as e:
        raise FileNotFoundError(
            f"no tokenizer for {name_or_path!r}: not a local directory and not in the Hugging Face cache "
            f"(tunedeck does not download here): {e}"
        ) from e


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def _plain_join(messages: Sequence[dict]) -> str:
    return "".join(f"{m.get('role', '?')}: {content_text(m.get('content'))}\n" for m in messages)


def _clean(messages: Any) -> list[dict]:
    """Messages as plain dicts with string ``content`` (missing or None content becomes "")."""
    out = []
    for m in messages or ():
        if isinstance(m, dict):
            d = {k: v for k, v in m.items() if v is not None}
            d["content"] = content_text(d.get("content"))
            out.append(d)
    return out


class _Renderer:
    """Renders conversations with the tokenizer's chat template (fast path checked against the public call)."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.template = has_chat_template(tokenizer)
        self._fast: Callable[..., str] | None = None
        self._checked = 0
        if self.template:
            try:
                from transformers.utils.chat_template_utils import _compile_jinja_template

                compiled = _compile_jinja_template(tokenizer.get_chat_template())
                special = {k: v for k, v in tokenizer.special_tokens_map.items() if isinstance(v, str | list)}

                def fast(messages: list[dict], tools: list[dict] | None = None) -> str:
                    return compiled.render(
                        messages=messages, tools=tools, documents=None, add_generation_prompt=False, **special
                    )

                self._fast = fast
            except Exception:  # private helper moved or template unusual: the public call does it all
                self._fast = None

    def public(self, messages: list[dict], add_generation_prompt: bool = False, tools: list[dict] | None = None) -> str:
        return self.tokenizer.apply_chat_template(
            messages, tools=tools or None, tokenize=False, add_generation_prompt=add_generation_prompt
        )

    def render(self, messages: list[dict], tools: list[dict] | None = None) -> str:
        """The chat as the template renders it; raises what the template raises, and
        :class:`ToolTemplateError` when tools or tool calls do not appear in the rendering."""
        if self._fast is not None and self._checked < _CHECK:
            expected = self.public(messages, tools=tools)
            try:
                same = self._fast(messages, tools or None) == expected
            except Exception:
                same = False
            self._checked += 1
            if not same:
                self._fast = None
            out = expected
        elif self._fast is not None:
            out = self._fast(messages, tools or None)
        else:
            out = self.public(messages, tools=tools)
        check_tools_rendered(self.tokenizer, messages, tools, out)
        return out


class ToolTemplateError(TunedeckError):
    """The model's chat template leaves out the tools or tool calls of a conversation."""


def _tool_names(messages: Sequence[dict], tools: Sequence[dict] | None) -> list[str]:
    names = [str((t.get("function") or t).get("name", "")) for t in tools or () if isinstance(t, dict)]
    for m in messages:
        for call in m.get("tool_calls") or ():
            if isinstance(call, dict):
                names.append(str((call.get("function") or call).get("name", "")))
    return [n for n in names if n]


def check_tools_rendered(tokenizer: Any, messages: Sequence[dict], tools: Sequence[dict] | None, rendered: str) -> None:
    """Raise :class:`ToolTemplateError` naming the model when a tool schema or tool call of the conversation is
    missing from its rendering: the template cannot render tools, and training on it would teach answers to
    calls the model never saw."""
    missing = [n for n in _tool_names(messages, tools) if n not in rendered]
    if missing:
        model = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
        raise ToolTemplateError(
            f"the chat template of {model} cannot render tools: {missing[0]!r} does not appear in its rendering of "
            "a conversation with tools; use a model whose chat template supports tool calling")


class TokenCounter:
    """Token lengths of normalized examples, batch by batch; also collects what went wrong on the way.

    After ``add``: ``template_errors`` (count), ``template_error_ids`` (first 50), ``template_error``
    (first message), ``control_tokens`` (examples whose message text contains the tokenizer's special
    tokens literally, which then encode as control tokens), ``control_token_ids``.
    """

    def __init__(self, tokenizer: Any, kind: str) -> None:
        if kind not in ("sft", "preference", "kto", "text"):
            raise ValueError(f"unknown kind {kind!r}")
        self.tokenizer = tokenizer
        self.kind = kind
        self.renderer = _Renderer(tokenizer)
        self.template_errors = 0
        self.template_error_ids: list[int] = []
        self.template_error: str | None = None
        self.control_tokens = 0
        self.control_token_ids: list[int] = []
        specials = sorted({t for t in getattr(tokenizer, "all_special_tokens", []) if t}, key=len, reverse=True)
        self._special_re = re.compile("|".join(map(re.escape, specials))) if specials else None
        backend = getattr(tokenizer, "backend_tokenizer", None) if getattr(tokenizer, "is_fast", False) else None
        self._backend = backend
        self._backend_checked = False

    @property
    def note(self) -> str | None:
        """Why lengths may differ from training, if they may."""
        if self.kind != "text" and not self.renderer.template:
            return "the tokenizer has no chat template: lengths use a plain 'role: content' join"
        return None

    def _render(self, example_id: int, messages: list[dict], tools: list[dict] | None = None) -> str:
        if self._special_re is not None:
            for m in messages:
                c = m.get("content")
                if isinstance(c, str) and self._special_re.search(c):
                    self.control_tokens += 1
                    if len(self.control_token_ids) < MAX_IDS:
                        self.control_token_ids.append(example_id)
                    break
        if not self.renderer.template or not messages:
            return _plain_join(messages)
        try:
            return self.renderer.render(messages, tools)
        except Exception as e:  # the template rejects this conversation (role order, system role, ...)
            self.template_errors += 1
            if len(self.template_error_ids) < MAX_IDS:
                self.template_error_ids.append(example_id)
            if self.template_error is None:
                self.template_error = f"{type(e).__name__}: {e}"[:300]
            return _plain_join(messages)

    def _encode_batch(self, texts: list[str], add_special_tokens: bool) -> list[Any]:
        """The Rust tokenizer on a batch, in parallel; without offsets when the version allows."""
        fast = getattr(self._backend, "encode_batch_fast", None)
        if fast is not None:
            return fast(texts, add_special_tokens=add_special_tokens)
        return self._backend.encode_batch(texts, add_special_tokens=add_special_tokens)

    def _encode(self, texts: list[str], add_special_tokens: bool) -> list[int]:
        if not texts:
            return []
        if self._backend is not None and not self._backend_checked:
            self._backend_checked = True
            probe = texts[:_CHECK]
            ref = [len(x) for x in self.tokenizer(probe, add_special_tokens=add_special_tokens)["input_ids"]]
            got = [len(e.ids) for e in self._encode_batch(probe, add_special_tokens)]
            if ref != got:
                self._backend = None
        out: list[int] = []
        for s in range(0, len(texts), BATCH):
            batch = texts[s : s + BATCH]
            if self._backend is not None:
                out.extend(len(e.ids) for e in self._encode_batch(batch, add_special_tokens))
            else:
                out.extend(len(x) for x in self.tokenizer(batch, add_special_tokens=add_special_tokens)["input_ids"])
        return out

    def add(
        self, examples: Sequence[dict], measure: np.ndarray | None = None, unless_within: int | None = None
    ) -> np.ndarray:
        """Token lengths of ``examples`` (normalized dicts, with or without ``id``), as int64.

        Every example is rendered (so template errors and control tokens are counted for all), but
        with ``measure`` (a bool per example) only those are encoded, plus, with ``unless_within``,
        every example whose rendering could have more than that many tokens: at most one token per
        UTF-8 byte (+ :data:`BYTE_BOUND_SLACK`), true of byte-level, byte-fallback and character
        vocabularies. Examples not encoded get -1.
        """
        n = len(examples)
        ids = [int(ex.get("id", i)) for i, ex in enumerate(examples)]
        if self.kind == "text":
            groups = [[content_text(ex.get("text")) for ex in examples]]
        elif self.kind == "sft":
            groups = [[_segments_text(ex) if "segments" in ex else self._render(i, _clean(ex.get("messages")),
                                                                                   ex.get("tools"))
                       for i, ex in zip(ids, examples, strict=True)]]  # fmt: skip
        elif self.kind == "kto":
            groups = [[self._render(i, _clean(ex.get("prompt")) + _clean(ex.get("completion")))
                       for i, ex in zip(ids, examples, strict=True)]]
        else:
            chosen, rejected = [], []
            for i, ex in zip(ids, examples, strict=True):
                prompt = _clean(ex.get("prompt"))
                chosen.append(self._render(i, prompt + _clean(ex.get("chosen"))))
                rejected.append(self._render(i, prompt + _clean(ex.get("rejected"))))
            groups = [chosen, rejected]
        todo = np.ones(n, dtype=bool) if measure is None else np.asarray(measure, dtype=bool).copy()
        if measure is not None and unless_within is not None:
            for texts in groups:
                size = np.fromiter((len(t) if t.isascii() else len(t.encode("utf-8", "surrogatepass")) for t in texts),
                                   dtype=np.int64, count=n)  # fmt: skip
                todo |= size + BYTE_BOUND_SLACK > unless_within
        out = np.full(n, -1, dtype=np.int64)
        where = np.flatnonzero(todo)
        for texts in groups:
            picked = [texts[k] for k in where.tolist()] if len(where) < n else texts
            got = np.asarray(self._encode(picked, self.kind == "text"), dtype=np.int64).reshape(len(where))
            out[where] = np.maximum(out[where], got)
        return out


def _segments_text(example: dict) -> str:
    """An input_output example as training encodes it: its segments' texts as written, no template."""
    return "".join(content_text(s.get("text")) for s in example.get("segments") or () if isinstance(s, dict))


BYTE_BOUND_SLACK = 16  # tokens a tokenizer may add beyond one per byte (BOS/EOS, a prefix space marker)


def token_lengths(tokenizer: Any, examples: Sequence[dict], kind: str) -> np.ndarray:
    """Token count of each example as training sees it (chat template, then encode).

    sft: the rendered ``messages``; preference: the longer of prompt+chosen and prompt+rejected;
    text: ``text`` encoded with the tokenizer's special tokens. Without a chat template the messages
    are joined as ``role: content`` lines (see :class:`TokenCounter` for the details it records).
    """
    return TokenCounter(tokenizer, kind).add(examples)


# ----------------------------------------------------------------------------- statistics


def _nice(x: float) -> int:
    """The smallest round integer (1, 2, 2.5 or 5 x 10^k) that is >= x."""
    if x <= 1:
        return 1
    exp = 10 ** math.floor(math.log10(x))
    for m in (1, 2, 2.5, 5, 10):
        if m * exp >= x and float(m * exp).is_integer():
            return int(m * exp)
    return int(10 * exp)


def histogram(values: np.ndarray, bins: int = 12) -> list[dict[str, int]]:
    """About ``bins`` bins of a round width covering the values: ``[{"lo", "hi", "count"}]``, hi exclusive."""
    v = np.asarray(values, dtype=np.int64)
    if not len(v):
        return []
    lo, hi = int(v.min()), int(v.max())
    width = _nice((hi - lo + 1) / bins)
    start = lo // width * width
    counts = np.bincount((v - start) // width)
    return [{"lo": start + i * width, "hi": start + (i + 1) * width, "count": int(c)} for i, c in enumerate(counts)]


def length_stats(lengths: np.ndarray, max_length: int, ids: Sequence[int] | None = None) -> dict[str, Any]:
    """min / median / p95 / max / mean / total, a histogram, and the examples longer than ``max_length``.

    ``ids`` names the examples (default: their positions); ``over_max_ids`` lists the first 50.
    """
    v = np.asarray(lengths, dtype=np.int64)
    out: dict[str, Any] = {"count": len(v), "max_length": int(max_length)}
    if not len(v):
        return {**out, "min": 0, "median": 0, "p95": 0, "max": 0, "mean": 0, "total": 0, "histogram": [],
                "over_max": 0, "over_max_ids": []}  # fmt: skip
    over = np.flatnonzero(v > max_length)
    id_list = list(range(len(v))) if ids is None else list(ids)
    return {
        **out,
        "min": int(v.min()),
        "median": round(float(np.median(v)), 1),
        "p95": round(float(np.percentile(v, 95)), 1),
        "max": int(v.max()),
        "mean": round(float(v.mean()), 1),
        "total": int(v.sum()),
        "histogram": histogram(v),
        "over_max": len(over),
        "over_max_ids": [int(id_list[i]) for i in over[:MAX_IDS]],
    }


# ----------------------------------------------------------------------------- label mask


def _end_marker_len(tokenizer: Any, text: str, pos: int) -> int:
    """Length of an added token (end-of-turn marker) starting at ``pos``, or 0."""
    best = 0
    for tok in getattr(tokenizer, "added_tokens_encoder", {}):
        if len(tok) > best and text.startswith(tok, pos):
            best = len(tok)
    return best


def assistant_spans(tokenizer: Any, messages: list[dict], full: str | None = None,
                    tools: list[dict] | None = None) -> list[tuple[int, int]]:
    """Character spans of ``full`` (the rendered chat) that training learns: each assistant turn's
    content plus its end-of-turn marker, without the whitespace the template writes after the marker.

    Turn i is the text between the rendering of ``messages[:i]`` with the generation prompt and the
    rendering of ``messages[:i+1]``; where the template does not render prefixes that way, the content
    is located in the text and the added token right after it is taken as the marker.
    """
    r = _Renderer(tokenizer)
    full = r.public(messages, tools=tools) if full is None else full
    spans: list[tuple[int, int]] = []
    cursor = 0
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        span = None
        if i > 0:
            try:
                prefix = r.public(messages[:i], add_generation_prompt=True, tools=tools)
                upto = r.public(messages[: i + 1], tools=tools)
            except Exception:
                prefix = upto = ""
            if len(upto) > len(prefix) >= cursor and upto.startswith(prefix) and full.startswith(upto):
                s, e = len(prefix), len(upto)
                while e > s and full[e - 1].isspace():
                    e -= 1
                span = (s, e)
        if span is None:
            content = content_text(m.get("content"))
            pos = full.find(content, cursor) if content else -1
            if pos >= 0:
                end = pos + len(content)
                span = (pos, end + _end_marker_len(tokenizer, full, end))
        if span is not None and span[1] > span[0]:
            spans.append(span)
            cursor = span[1]
    return spans


def _encode_masked(tokenizer: Any, messages: list[dict],
                   tools: list[dict] | None = None) -> tuple[str, list[int], list[tuple[int, int]], list[bool]]:
    """(rendered chat, token ids, character offsets, trained flags): the one place the mask rule lives."""
    if not has_chat_template(tokenizer):
        raise ValueError("the tokenizer has no chat template")
    if not getattr(tokenizer, "is_fast", False):
        raise ValueError("the label mask needs a fast tokenizer (character offsets)")
    messages = _clean(messages)
    full = _Renderer(tokenizer).public(messages, tools=tools)
    check_tools_rendered(tokenizer, messages, tools, full)
    spans = assistant_spans(tokenizer, messages, full, tools)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    offsets = [(int(s), int(e)) for s, e in enc["offset_mapping"]]
    starts = np.array([s for s, _ in spans], dtype=np.int64)
    ends = np.array([e for _, e in spans], dtype=np.int64)
    trained = [
        bool(((starts < e) & (ends > s)).any()) if e > s else bool(((starts <= s) & (ends > s)).any())
        for s, e in offsets
    ]
    return full, list(enc["input_ids"]), offsets, trained


def encode_chat(tokenizer: Any, messages: list[dict], tools: list[dict] | None = None) -> tuple[list[int], list[int]]:
    """Token ids of a chat rendered with the tokenizer's template, and its assistant mask (1 = trained).

    Training uses this, and the lint report's label mask shows the same rule, so what a
    person sees in the report is exactly what the loss is computed on.
    """
    _full, ids, _offsets, trained = _encode_masked(tokenizer, messages, tools)
    return ids, [int(t) for t in trained]


def encode_segments(tokenizer: Any, segments: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of an input_output example (each segment encoded as written, no special tokens added: the
    segments carry their own) and its mask (1 = a segment with label true)."""
    ids: list[int] = []
    mask: list[int] = []
    for seg in segments:
        piece = tokenizer(content_text(seg.get("text")), add_special_tokens=False)["input_ids"]
        ids += piece
        mask += [int(bool(seg.get("label")))] * len(piece)
    return ids, mask


def label_mask(tokenizer: Any, messages: list[dict], max_tokens: int | None = None,
               tools: list[dict] | None = None) -> list[tuple[str, bool]]:
    """``(token text, trained?)`` for every token of the rendered chat (the first ``max_tokens``).

    Trained tokens are those overlapping an assistant span (:func:`assistant_spans`); everything
    else (system and user turns, role headers, template boilerplate) is masked from the loss.
    Token texts are slices of the rendered chat, so they concatenate back to it.
    """
    full, _ids, offsets, flags = _encode_masked(tokenizer, messages, tools)
    if max_tokens is not None:
        offsets, flags = offsets[:max_tokens], flags[:max_tokens]
    pairs: list[tuple[str, bool]] = []
    covered = 0
    for (_s, e), trained in zip(offsets, flags, strict=True):
        text = full[covered:e] if e > covered else ""  # a gap before the token goes with it
        covered = max(covered, e)
        pairs.append((text, trained))
    if max_tokens is None and pairs and covered < len(full):
        pairs[-1] = (pairs[-1][0] + full[covered:], pairs[-1][1])
    return pairs


def mask_runs(pairs: Sequence[tuple[str, bool]]) -> list[tuple[str, bool]]:
    """Consecutive tokens with the same flag merged: ``[(text, trained), ...]``."""
    runs: list[tuple[str, bool]] = []
    for text, trained in pairs:
        if runs and runs[-1][1] == trained:
            runs[-1] = (runs[-1][0] + text, trained)
        else:
            runs.append((text, trained))
    return runs


def _show(text: str) -> str:
    return text.replace("[", "\\[").replace("]", "\\]").replace("\n", "↵\n")


MASK_LEGEND = "plain = trained (assistant turns), [bracketed] = masked from the loss, ↵ = newline"


def render_mask(pairs: Sequence[tuple[str, bool]], legend: bool = True) -> str:
    """The chat with masked stretches in ``[...]`` and trained ones plain (literal brackets escaped)."""
    body = "".join(_show(t) if trained else f"[{_show(t)}]" for t, trained in mask_runs(pairs) if t)
    return f"{MASK_LEGEND}\n{body}" if legend else body


def mask_summary(pairs: Sequence[tuple[str, bool]]) -> dict[str, Any]:
    """Token counts: ``{"tokens", "trained", "masked", "trained_fraction"}``."""
    trained = sum(1 for _, t in pairs if t)
    return {"tokens": len(pairs), "trained": trained, "masked": len(pairs) - trained,
            "trained_fraction": round(trained / len(pairs), 3) if pairs else 0.0}  # fmt: skip
