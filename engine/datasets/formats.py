"""Detecting, validating and normalizing dataset records (see ``types`` for the normalized shapes).

Every problem of a record is reported, each as ``file:line: field: message`` with the field's path
(``messages[2].role``) and what was expected; :func:`load_examples` reads a whole source.
"""

from __future__ import annotations

import gc
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.datasets.messages import (
    CHAT,
    MISSING,
    SHAREGPT,
    Problems,
    check_turns,
    empty,
    media_problem,
    message,
    message_list,
    messages,
    optional_text,
    show,
    split_last_assistant,
    text,
    tools,
)
from engine.datasets.readers import SourceFields, iter_records, kind
from engine.datasets.types import FORMATS, Example, Location, RecordError
from store.errors import TunedeckError

ON_ERROR = ("fail", "skip")
CHECK_EVERY = 1000  # records between progress reports and cancellation checks
_SIGNATURE = ("messages (chat), conversations (sharegpt), prompt+chosen+rejected or chosen+rejected "
              "conversations (preference), messages/completion+label or kto_tag (kto), segments (input_output), "
              "instruction+output (alpaca) or text (text)")
_OWN_KEYS = {"chat": ("messages",), "sharegpt": ("conversations",), "preference": ("chosen", "rejected"),
             "kto": ("kto_tag", "label", "completion"), "input_output": ("segments",),
             "alpaca": ("instruction",), "text": ("text",)}
# message prefix -> category of the error, for reports; the first match wins
_CATEGORIES = (
    ("invalid JSON", "invalid JSON"), ("invalid UTF-8", "invalid UTF-8"), ("expected a JSON object", "not an object"),
    ("malformed CSV", "malformed CSV"), ("unrecognized record", "unrecognized format"),
    ("mixed formats", "mixed formats"), ("multimodal", "multimodal"), ("missing", "missing field"),
    ("empty", "empty content"),
    ("only whitespace", "empty content"), ("unknown role", "unknown role"), ("unknown speaker", "unknown role"),
    ("a system message", "system message not first"), ("the conversation must start", "bad turn order"),
    ("the prompt must end", "bad turn order"), ("nothing may follow", "bad turn order"),
    ("no assistant", "no assistant turn"), ("no gpt", "no assistant turn"),
    ("identical to chosen", "chosen equals rejected"), ("expected assistant", "wrong role"),
    ("the conversation before", "prompts differ"), ("differs from the conversation", "prompts differ"),
    ("not valid JSON", "invalid JSON"),
)


class DataError(TunedeckError):
    """The records of a source are not usable; ``errors`` holds the first ones, ``error_count`` counts all."""

    def __init__(self, message: str, errors: Iterable[RecordError] = (), error_count: int = 0) -> None:
        super().__init__(message)
        self.errors = list(errors)
        self.error_count = error_count


class ImportCancelled(TunedeckError):
    """``should_stop`` asked :func:`load_examples` to stop."""


@dataclass
class LoadResult:
    """What :func:`load_examples` read: the valid examples and what was wrong with the rest."""

    format: str
    examples: list[Example]
    errors: list[RecordError] = field(default_factory=list)  # the first max_errors problems
    error_count: int = 0  # all problems (a record may have several)
    dropped: dict[str, int] = field(default_factory=dict)  # dropped records by category of their first problem
    unused: dict[str, int] = field(default_factory=dict)  # field the import left out -> valid records holding it
    total: int = 0  # records read (blank lines not counted)
    valid: int = 0  # valid examples (kept in `examples`, or handed to the sink)


def detect_format(record: dict[str, Any]) -> str | None:
    """The format a record's keys say it is in, or None."""
    if "segments" in record:
        return "input_output"
    if "kto_tag" in record or (isinstance(record.get("label"), bool)
                               and ("messages" in record or "conversations" in record or "completion" in record)):
        return "kto"
    if "chosen" in record and "rejected" in record:
        return "preference"
    if "messages" in record:
        return "chat"
    if "conversations" in record:
        return "sharegpt"
    if "instruction" in record and "output" in record:
        return "alpaca"
    if "text" in record:
        return "text"
    return None


def error_category(error: RecordError) -> str:
    """A short category for an error ("invalid JSON", "missing field", ...), for summaries."""
    message = error.message
    for prefix, category in _CATEGORIES:
        if message.startswith(prefix):
            return category
    if message.startswith("expected"):
        return "wrong field count" if " fields as in the header" in message else "wrong type"
    return "other"


def normalize(record: dict[str, Any], fmt: str, loc: Location) -> Example | list[RecordError]:
    """RECORD validated as format FMT and normalized, or every problem found in it. The example's
    ``extra["unused"]`` names the fields the record has that the normalized example leaves out."""
    errs = Problems(loc)
    media_problem(record, errs)
    data = _NORMALIZERS[fmt](record, errs)
    if errs.items or data is None:
        return errs.items
    used = errs.used
    if errs.unused or any(k not in used for k in record):
        unused = sorted({k for k, v in record.items() if k not in used and not empty(v)} | errs.unused)
        if unused:
            return Example(data=data, location=loc, format=fmt, extra={"unused": unused})
    return Example(data=data, location=loc, format=fmt)


# --- the formats ----------------------------------------------------------------------------------------


def _system_first(record: dict[str, Any], msgs: list[dict[str, Any]], errs: Problems) -> list[dict[str, Any]]:
    """A ``system`` column put in front of the messages (LLaMA-Factory, many exports)."""
    system = optional_text(record, "system", errs)
    if system is None:
        return msgs
    if msgs and msgs[0].get("role") == "system":
        errs.add("system", "both a system column and a system message (keep one)")
        return msgs
    return [{"role": "system", "content": system}, *msgs]


def _history(record: dict[str, Any], errs: Problems) -> list[dict[str, Any]]:
    """Alpaca's optional ``history``: earlier ``[instruction, answer]`` pairs, as turns."""
    errs.use("history")
    value = record.get("history")
    if empty(value):
        return []
    if not isinstance(value, list):
        errs.add("history", f"expected a list of [instruction, answer] pairs, got {kind(value)}")
        return []
    out: list[dict[str, Any]] = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2):
            errs.add(f"history[{i}]", f"expected an [instruction, answer] pair, got {show(pair)}")
            continue
        q, a = text(pair[0], f"history[{i}][0]", errs), text(pair[1], f"history[{i}][1]", errs)
        out += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return out


def _instruction_prompt(record: dict[str, Any], errs: Problems) -> list[dict[str, Any]] | None:
    """Alpaca's instruction (+ input, history, system) as the messages up to the answer."""
    errs.use("instruction", "input")
    instruction = text(record.get("instruction", MISSING), "instruction", errs)
    extra = optional_text(record, "input", errs)
    turns = _history(record, errs)
    if instruction is None:
        return None
    user = instruction if extra is None else f"{instruction}\n\n{extra}"
    return _system_first(record, [*turns, {"role": "user", "content": user}], errs)


def _alpaca(record: dict[str, Any], errs: Problems) -> dict[str, Any] | None:
    prompt = _instruction_prompt(record, errs)
    errs.use("output")
    output = text(record.get("output", MISSING), "output", errs)
    if prompt is None or output is None or errs.items:
        return None
    return {"messages": [*prompt, {"role": "assistant", "content": output}]}


def _with_tools(record: dict[str, Any], msgs: list[dict[str, Any]], errs: Problems) -> dict[str, Any] | None:
    schemas = tools(record, errs)
    if errs.items:
        return None
    return {"messages": msgs, "tools": schemas} if schemas else {"messages": msgs}


def _chat(record: dict[str, Any], errs: Problems) -> dict[str, Any] | None:
    errs.use("messages")
    msgs = messages(record.get("messages", MISSING), "messages", errs)
    if msgs is None:
        return None
    msgs = _system_first(record, msgs, errs)
    check_turns(msgs, "messages", errs)
    return _with_tools(record, msgs, errs)


def _sharegpt(record: dict[str, Any], errs: Problems) -> dict[str, Any] | None:
    errs.use("conversations")
    msgs = messages(record.get("conversations", MISSING), "conversations", errs, SHAREGPT)
    if msgs is None:
        return None
    msgs = _system_first(record, msgs, errs)
    check_turns(msgs, "conversations", errs, SHAREGPT)
    return _with_tools(record, msgs, errs)


_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant): ")


def transcript(value: str) -> list[dict[str, Any]] | None:
    """An HH-RLHF style transcript (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as messages; None if it is not one."""
    body = value.lstrip("\n")
    if not body.startswith("Human: "):
        return None
    parts = _TURN.split(body)  # ["", "Human", text, "Assistant", text, ...]
    return [{"role": "user" if who == "Human" else "assistant", "content": said.strip()}
            for who, said in zip(parts[1::2], parts[2::2], strict=True)]


def _prompt_of(record: dict[str, Any], errs: Problems) -> list[dict[str, Any]] | bool | None:
    """The prompt of a preference or KTO record: from ``prompt`` (a string or messages), ``conversations``
    (LLaMA-Factory) or ``instruction`` (+input); False when the record has none of these."""
    if "prompt" in record:
        errs.use("prompt")
        value = record["prompt"]
        if isinstance(value, str):
            body = text(value, "prompt", errs)
            return None if body is None else _system_first(record, [{"role": "user", "content": body}], errs)
        msgs = messages(value, "prompt", errs, expected="a string or a list of messages")
        if msgs is not None:
            msgs = _system_first(record, msgs, errs)
            check_turns(msgs, "prompt", errs, prompt=True)
        return msgs
    if "conversations" in record:
        errs.use("conversations")
        msgs = messages(record["conversations"], "conversations", errs, SHAREGPT)
        if msgs is not None:
            msgs = _system_first(record, msgs, errs)
            check_turns(msgs, "conversations", errs, SHAREGPT, prompt=True)
        return msgs
    if "instruction" in record:
        return _instruction_prompt(record, errs)
    return False


def _response(record: dict[str, Any], key: str, errs: Problems, transcripts: bool) -> list[dict[str, Any]] | None:
    """A response field: a string (one assistant message, or with TRANSCRIPTS an HH-RLHF transcript), one
    message object (LLaMA-Factory's ``{"from": "gpt", "value": ...}``), or a list of messages."""
    errs.use(key)
    value = record.get(key, MISSING)
    if isinstance(value, str):
        turns = transcript(value) if transcripts else None
        if turns is not None:
            value = turns
        else:
            body = text(value, key, errs)
            return None if body is None else [{"role": "assistant", "content": body}]
    if isinstance(value, dict):
        style = SHAREGPT if "from" in value else CHAT
        return [message(value, key, errs, style, key)]
    style = SHAREGPT if isinstance(value, list) and value and isinstance(value[0], dict) and "from" in value[0] \
        else CHAT  # fmt: skip
    return messages(value, key, errs, style, expected="a string or a list of messages")


def _completion(msgs: list[dict[str, Any]], key: str, errs: Problems) -> tuple[list[dict], list[dict]] | None:
    """(what comes before, the completion) of a response: a whole conversation is split at its last assistant
    turn; assistant messages alone are all completion."""
    if any(m["role"] is None for m in msgs):
        return None
    if all(m["role"] == "assistant" for m in msgs):
        return [], msgs
    check_turns(msgs, key, errs)
    return split_last_assistant(msgs, key, errs)


def _same_prompt(given: list[dict[str, Any]], found: list[dict[str, Any]]) -> bool:
    """Whether a given prompt agrees with the conversation found before the completion (UltraFeedback gives the
    last user message as ``prompt`` and the whole conversation in chosen/rejected)."""
    if given == found:
        return True
    user = [m for m in given if m["role"] != "system"]
    return len(user) == 1 and bool(found) and found[-1]["role"] == "user" and \
        found[-1]["content"].strip() == user[0]["content"].strip()  # fmt: skip


def _preference(record: dict[str, Any], errs: Problems) -> dict[str, Any] | None:
    prompt = _prompt_of(record, errs)
    chosen = _response(record, "chosen", errs, transcripts=prompt is False)
    rejected = _response(record, "rejected", errs, transcripts=prompt is False)
    if chosen is None or rejected is None or prompt is None or errs.items:
        return None
    c_split, r_split = _completion(chosen, "chosen", errs), _completion(rejected, "rejected", errs)
    if c_split is None or r_split is None:
        return None
    (c_before, chosen), (r_before, rejected) = c_split, r_split
    if c_before != r_before:
        errs.add("rejected", "the conversation before the last assistant turn differs from chosen's "
                             "(expected a shared prompt)")
    elif c_before:
        if prompt is not False and not _same_prompt(prompt, c_before):
            errs.add("prompt", "differs from the conversation before chosen's last assistant turn")
        prompt = c_before
    elif prompt is False:
        errs.add("prompt", "missing (expected a string or a list of messages, or chosen/rejected conversations "
                           "that hold the prompt)")
    if chosen == rejected:
        errs.add("rejected", "identical to chosen (a preference pair needs two different responses)")
    if errs.items:
        return None
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _label(record: dict[str, Any], errs: Problems) -> bool | None:
    key = "kto_tag" if "kto_tag" in record else "label"
    errs.use(key)
    value = record.get(key, MISSING)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"  # CSV cells
    if isinstance(value, bool):
        return value
    got = "missing" if value is MISSING else f"got {kind(value)} {show(value)}"
    errs.add(key, f"expected true (a desirable completion) or false (an undesirable one), {got}")
    return None


def _kto(record: dict[str, Any], errs: Problems) -> dict[str, Any] | None:
    label = _label(record, errs)
    if "completion" in record:
        prompt = _prompt_of(record, errs)
        completion = _response(record, "completion", errs, transcripts=False)
        if prompt is False:
            errs.add("prompt", "missing (expected a string or a list of messages)")
        if prompt is None or prompt is False or completion is None or errs.items:
            return None
        split = _completion(completion, "completion", errs)
        if split is None:
            return None
        before, completion = split
        prompt = [*prompt, *before]
    else:
        key, style = ("messages", CHAT) if "messages" in record or "conversations" not in record \
            else ("conversations", SHAREGPT)  # fmt: skip
        errs.use(key)
        msgs = messages(record.get(key, MISSING), key, errs, style)
        if msgs is None or errs.items:
            return None
        msgs = _system_first(record, msgs, errs)
        check_turns(msgs, key, errs, style)
        split = None if errs.items else split_last_assistant(msgs, key, errs, style)
        if split is None:
            return None
        prompt, completion = split
    if errs.items or label is None:
        return None
    return {"prompt": prompt, "completion": completion, "label": label}


def _input_output(record: dict[str, Any], errs: Problems) -> dict[str, Any] | None:
    """axolotl's template-free layout: text segments, each trained on (label true) or not."""
    errs.use("segments")
    value = record.get("segments", MISSING)
    items = message_list(value, "segments", errs, "a list of segments")
    if items is None:
        return None
    out = []
    for i, seg in enumerate(items):
        where = f"segments[{i}]"
        if not isinstance(seg, dict):
            errs.add(where, f"expected an object with label and text, got {kind(seg)}")
            continue
        body = seg.get("text", MISSING)
        if not isinstance(body, str):
            errs.add(f"{where}.text", "missing (expected a string)" if body is MISSING else
                     f"expected a string, got {kind(body)}")  # fmt: skip
        label = seg.get("label", MISSING)
        if not isinstance(label, bool):
            errs.add(f"{where}.label", "expected true (trained on) or false (context only)")
        errs.unused.update(f"segments[].{k}" for k in seg if k not in ("text", "label") and not empty(seg[k]))
        out.append({"text": body, "label": label})
    if not errs.items and not any(s["label"] and s["text"].strip() for s in out):
        errs.add("segments", "no segment with label true to learn from")
    return None if errs.items else {"segments": out}


def _text_format(record: dict[str, Any], errs: Problems) -> dict[str, Any] | None:
    errs.use("text")
    body = text(record.get("text", MISSING), "text", errs)
    return None if body is None else {"text": body}


_NORMALIZERS: dict[str, Callable[[dict[str, Any], Problems], dict[str, Any] | None]] = {
    "alpaca": _alpaca, "chat": _chat, "sharegpt": _sharegpt, "preference": _preference, "kto": _kto,
    "input_output": _input_output, "text": _text_format,
}


# --- loading --------------------------------------------------------------------------------------------


def load_examples(source: str | Path, fmt: str = "auto", on_error: str = "fail", max_errors: int = 20,
                  progress: Callable[[int], None] | None = None,
                  should_stop: Callable[[], bool] | None = None,
                  sink: Callable[[Example], None] | None = None) -> LoadResult:
    """Read, validate and normalize every record of SOURCE.

    FMT is one of ``FORMATS`` or "auto" (detected from the first object record). ON_ERROR "fail" raises
    :class:`DataError` if any record is bad; "skip" keeps the valid ones and reports the rest. Either way
    a source without a valid example raises :class:`DataError`. PROGRESS gets the number of records read
    every ``CHECK_EVERY`` records and at the end; SHOULD_STOP returning True raises :class:`ImportCancelled`.
    With SINK, each valid example goes to it as it is read and none is kept (constant memory); the
    result's ``examples`` is then empty and ``valid`` counts them.
    """
    if fmt != "auto" and fmt not in FORMATS:
        raise DataError(f"unknown format '{fmt}', expected auto or one of {', '.join(FORMATS)}")
    if on_error not in ON_ERROR:
        raise DataError(f"unknown on-error policy '{on_error}', expected fail or skip")
    loader = _Loader(None if fmt == "auto" else fmt, keep_examples=sink is None, max_errors=max_errors)
    loader.sink = sink
    with _no_gc():
        for n, (loc, record) in enumerate(iter_records(source), 1):
            if n % CHECK_EVERY == 0:
                if should_stop is not None and should_stop():
                    raise ImportCancelled(f"import of {source} cancelled after {n} records")
                if progress is not None:
                    progress(n)
            loader.add(loc, record)
            if on_error == "fail" and loader.error_count:
                loader.keep_examples = False  # it will fail: hold no more examples, but count every error
    if progress is not None:
        progress(loader.total)
    return loader.result(str(source), on_error)


@contextmanager
def _no_gc() -> Iterator[None]:
    """The cycle collector paused: examples hold no cycles, and it would rescan them all again and again."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class _Loader:
    """The running state of a load: detected format, examples kept, errors seen."""

    def __init__(self, fmt: str | None, keep_examples: bool, max_errors: int) -> None:
        self.fmt = fmt
        self.explicit = fmt is not None
        self.fmt_from: Location | None = None
        self.keep_examples = keep_examples
        self.max_errors = max_errors
        self.examples: list[Example] = []
        self.errors: list[RecordError] = []
        self.error_count = 0
        self.dropped: dict[str, int] = {}
        self.total = 0
        self.valid = 0
        self.unused: Counter[str] = Counter()
        self.sink: Callable[[Example], None] | None = None

    def add(self, loc: Location, record: dict[str, Any] | RecordError | SourceFields) -> None:
        if isinstance(record, SourceFields):  # top-level keys beside a file's list of records
            self.unused.update(f"(top level) {k}" for k in record.fields)
            return
        self.total += 1
        if isinstance(record, RecordError):
            self._drop([record])
            return
        fmt = self._format_of(record, loc)
        if isinstance(fmt, RecordError):
            self._drop([fmt])
            return
        result = normalize(record, fmt, loc)
        if isinstance(result, Example):
            self.valid += 1
            if result.extra:
                self.unused.update(result.extra["unused"])
            if self.sink is not None:
                self.sink(result)
            elif self.keep_examples:
                self.examples.append(result)
        else:
            self._drop(result)

    def _format_of(self, record: dict[str, Any], loc: Location) -> str | RecordError:
        if self.explicit:
            return self.fmt  # type: ignore[return-value]
        fmt = self.fmt
        if fmt is not None and any(k in record for k in _OWN_KEYS[fmt]):
            return fmt
        found = detect_format(record) or _guess_format(record)
        if found is None:
            return fmt if fmt is not None else RecordError(loc, "", _unrecognized(record))
        if fmt is None:
            self.fmt, self.fmt_from = found, loc
            return found
        if found != fmt:
            where = "the file" if self.fmt_from is None or self.fmt_from.file == loc.file else self.fmt_from.file
            return RecordError(loc, "", f"mixed formats: this record looks like {found}, {where} is {fmt}")
        return fmt

    def _drop(self, errors: list[RecordError]) -> None:
        category = error_category(errors[0])
        self.dropped[category] = self.dropped.get(category, 0) + 1
        self.error_count += len(errors)
        room = self.max_errors - len(self.errors)
        if room > 0:
            self.errors.extend(errors[:room])

    def result(self, source: str, on_error: str) -> LoadResult:
        if self.error_count and on_error == "fail":
            raise DataError(f"{source}: {self._summary()}:\n{self._listing()}", self.errors, self.error_count)
        if not self.valid:
            why = ": it holds no records" if self.total == 0 else f" ({self._summary()}):\n{self._listing()}"
            raise DataError(f"no valid examples in {source}{why}", self.errors, self.error_count)
        return LoadResult(format=self.fmt or "", examples=self.examples, errors=self.errors,
                          error_count=self.error_count, dropped=self.dropped, total=self.total, valid=self.valid,
                          unused=dict(sorted(self.unused.items(), key=lambda kv: (-kv[1], kv[0]))))

    def _summary(self) -> str:
        bad = sum(self.dropped.values())
        return f"{_plural(self.error_count, 'error')} in {bad} of {_plural(self.total, 'record')}"

    def _listing(self) -> str:
        lines = [f"  {e}" for e in self.errors]
        more = self.error_count - len(self.errors)
        if more > 0:
            lines.append(f"  ... and {_plural(more, 'more error')}")
        return "\n".join(lines)


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _guess_format(record: dict[str, Any]) -> str | None:
    """The format of an incomplete record, from the keys only that format uses."""
    if "chosen" in record or "rejected" in record:
        return "preference"
    if "completion" in record and "label" in record:
        return "kto"
    if "instruction" in record:
        return "alpaca"
    return None


def _unrecognized(record: dict[str, Any]) -> str:
    keys = [k if len(k) <= 30 and k.isprintable() else show(k) for k in map(str, list(record)[:8])]
    have = f"keys {', '.join(keys)}{', ...' if len(record) > 8 else ''}" if record else "no keys"
    return f"unrecognized record with {have}; expected {_SIGNATURE}"
