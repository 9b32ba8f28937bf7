"""Detecting, validating and normalizing dataset records (see ``types`` for the normalized shapes).

Every problem of a record is reported, each as ``file:line: field: message`` with the field's path
(``messages[2].role``) and what was expected; :func:`load_examples` reads a whole source.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.datasets.readers import iter_records, kind
from engine.datasets.types import FORMATS, ROLES, Example, Location, RecordError
from store.errors import TunedeckError

ON_ERROR = ("fail", "skip")
CHECK_EVERY = 1000  # records between progress reports and cancellation checks
SHAREGPT_ROLES = {"human": "user", "gpt": "assistant", "system": "system"}
_CHAT_ROLES = {r: r for r in ROLES}
_MISSING: Any = object()
_TEXT = "a non-empty string"
_TEXT_OR_MESSAGES = "a string or a list of messages"
_SIGNATURE = ("messages (chat), conversations (sharegpt), prompt+chosen+rejected (preference), "
              "instruction+output (alpaca) or text (text)")
_OWN_KEYS = {"chat": ("messages",), "sharegpt": ("conversations",), "preference": ("chosen", "rejected"),
             "alpaca": ("instruction",), "text": ("text",)}
# message prefix -> category of the error, for reports; the first match wins
_CATEGORIES = (
    ("invalid JSON", "invalid JSON"), ("invalid UTF-8", "invalid UTF-8"), ("expected a JSON object", "not an object"),
    ("malformed CSV", "malformed CSV"), ("unrecognized record", "unrecognized format"),
    ("mixed formats", "mixed formats"), ("missing", "missing field"), ("empty", "empty content"),
    ("only whitespace", "empty content"), ("unknown role", "unknown role"), ("unknown speaker", "unknown role"),
    ("a system message", "system message not first"), ("the conversation must start", "bad turn order"),
    ("the prompt must end", "bad turn order"), ("no assistant", "no assistant turn"), ("no gpt", "no assistant turn"),
    ("identical to chosen", "chosen equals rejected"), ("expected assistant", "wrong role"),
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
    total: int = 0  # records read (blank lines not counted)
    valid: int = 0  # valid examples (kept in `examples`, or handed to the sink)


def detect_format(record: dict[str, Any]) -> str | None:
    """The format a record's keys say it is in, or None."""
    if "messages" in record:
        return "chat"
    if "conversations" in record:
        return "sharegpt"
    if "prompt" in record and "chosen" in record and "rejected" in record:
        return "preference"
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
    """RECORD validated as format FMT and normalized, or every problem found in it."""
    errs = _Errors(loc)
    data = _NORMALIZERS[fmt](record, errs)
    if errs.items or data is None:
        return errs.items
    return Example(data=data, location=loc, format=fmt)


# --- validation helpers ---------------------------------------------------------------------------------


class _Errors:
    """The problems of one record."""

    __slots__ = ("items", "loc")

    def __init__(self, loc: Location) -> None:
        self.loc = loc
        self.items: list[RecordError] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(RecordError(self.loc, path, message))


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(value: Any, path: str, errs: _Errors) -> str | None:
    """VALUE if it is a non-empty string, else None with the problem noted."""
    if isinstance(value, str):
        if value and not value.isspace():
            return value
        errs.add(path, f"{'only whitespace' if value else 'empty'} (expected {_TEXT})")
    elif value is _MISSING:
        errs.add(path, f"missing (expected {_TEXT})")
    else:
        errs.add(path, f"expected a string, got {kind(value)}")
    return None


def _optional_text(record: dict[str, Any], key: str, errs: _Errors) -> str | None:
    """An optional string field: None when absent, null or blank."""
    value = record.get(key)
    if value is None or (isinstance(value, str) and (not value or value.isspace())):
        return None
    if not isinstance(value, str):
        errs.add(key, f"expected a string, got {kind(value)}")
        return None
    return value


def _message_list(value: Any, path: str, errs: _Errors, expected: str) -> list[Any] | None:
    if isinstance(value, list):
        if value:
            return value
        errs.add(path, "empty (expected at least one message)")
    elif value is _MISSING:
        errs.add(path, f"missing (expected {expected})")
    else:
        errs.add(path, f"expected {expected}, got {kind(value)}")
    return None


def _messages(value: Any, path: str, errs: _Errors, role_key: str = "role", content_key: str = "content",
              roles: dict[str, str] = _CHAT_ROLES, expected: str = "a list of messages") -> list[dict[str, Any]] | None:
    """Messages mapped to ``{"role", "content"}``, each checked (a bad part is noted and left None);
    None if VALUE is not a non-empty list."""
    items = _message_list(value, path, errs, expected)
    if items is None:
        return None
    out: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        if type(item) is dict:  # the fast path: a valid message
            role, content = item.get(role_key), item.get(content_key)
            role = roles.get(role) if type(role) is str else None
            if role is not None and type(content) is str and content and not content.isspace():
                out.append({"role": role, "content": content})
                continue
        out.append(_bad_message(item, f"{path}[{i}]", errs, role_key, content_key, roles))
    return out


def _bad_message(item: Any, where: str, errs: _Errors, role_key: str, content_key: str,
                 roles: dict[str, str]) -> dict[str, Any]:
    """A message with a problem: every problem noted, the bad parts None."""
    if not isinstance(item, dict):
        errs.add(where, f"expected an object with {role_key} and {content_key}, got {kind(item)}")
        return {"role": None, "content": None}
    role = _role(item.get(role_key, _MISSING), f"{where}.{role_key}", errs, roles)
    content = _text(item.get(content_key, _MISSING), f"{where}.{content_key}", errs)
    return {"role": role, "content": content}


def _role(value: Any, path: str, errs: _Errors, roles: dict[str, str]) -> str | None:
    if isinstance(value, str):
        role = roles.get(value)
        if role is not None:
            return role
        word = "role" if roles is _CHAT_ROLES else "speaker"
        hint = " (names are lower case)" if value.lower() in roles else ""
        errs.add(path, f"unknown {word} {_show(value)}{hint}, expected one of {', '.join(roles)}")
    elif value is _MISSING:
        errs.add(path, f"missing (expected one of {', '.join(roles)})")
    else:
        errs.add(path, f"expected a string, got {kind(value)}")
    return None


def _check_turns(messages: list[dict[str, Any]], path: str, errs: _Errors, role_key: str = "role",
                 names: dict[str, str] | None = None, prompt: bool = False) -> None:
    """System only first and a user turn before any other; then an assistant turn to learn from, or
    (PROMPT) a last turn from the user. Turns whose role is unknown (None) are not judged."""
    name = names.get if names else str
    roles = [m["role"] for m in messages]
    for i, role in enumerate(roles):
        if role == "system" and i > 0:
            errs.add(f"{path}[{i}].{role_key}", "a system message may only come first")
    first = 1 if roles[0] == "system" else 0
    if first < len(roles) and roles[first] not in ("user", None):
        errs.add(f"{path}[{first}].{role_key}",
                 f"the conversation must start with a {name('user')} message, got {name(roles[first])}")
    last = len(roles) - 1
    if prompt:
        if roles[last] not in ("user", None) and last != first:
            errs.add(f"{path}[{last}].{role_key}", f"the prompt must end with a user message, got {roles[last]}")
    elif None not in roles and "assistant" not in roles:
        errs.add(path, f"no {name('assistant')} message to learn from")


# --- the formats ----------------------------------------------------------------------------------------


def _alpaca(record: dict[str, Any], errs: _Errors) -> dict[str, Any] | None:
    instruction = _text(record.get("instruction", _MISSING), "instruction", errs)
    extra = _optional_text(record, "input", errs)
    output = _text(record.get("output", _MISSING), "output", errs)
    system = _optional_text(record, "system", errs)
    if instruction is None or output is None or errs.items:
        return None
    user = instruction if extra is None else f"{instruction}\n\n{extra}"
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": system})
    return {"messages": messages}


def _chat(record: dict[str, Any], errs: _Errors) -> dict[str, Any] | None:
    messages = _messages(record.get("messages", _MISSING), "messages", errs)
    if messages is None:
        return None
    _check_turns(messages, "messages", errs)
    return None if errs.items else {"messages": messages}


_SHAREGPT_NAMES = {v: k for k, v in SHAREGPT_ROLES.items()}


def _sharegpt(record: dict[str, Any], errs: _Errors) -> dict[str, Any] | None:
    messages = _messages(record.get("conversations", _MISSING), "conversations", errs, "from", "value",
                         SHAREGPT_ROLES, "a list of turns")
    if messages is None:
        return None
    _check_turns(messages, "conversations", errs, "from", _SHAREGPT_NAMES)
    return None if errs.items else {"messages": messages}


def _preference(record: dict[str, Any], errs: _Errors) -> dict[str, Any] | None:
    prompt = _side(record, "prompt", "user", errs)
    chosen = _side(record, "chosen", "assistant", errs)
    rejected = _side(record, "rejected", "assistant", errs)
    if chosen is not None and chosen == rejected:
        errs.add("rejected", "identical to chosen (a preference pair needs two different responses)")
    if prompt is None or chosen is None or rejected is None or errs.items:
        return None
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _side(record: dict[str, Any], key: str, role: str, errs: _Errors) -> list[dict[str, Any]] | None:
    """A preference field, a string (one ROLE message) or a list of messages; None if it has a problem."""
    value = record.get(key, _MISSING)
    if isinstance(value, str):
        content = _text(value, key, errs)
        return None if content is None else [{"role": role, "content": content}]
    before = len(errs.items)
    messages = _messages(value, key, errs, expected=_TEXT_OR_MESSAGES)
    if messages is None:
        return None
    if key == "prompt":
        _check_turns(messages, key, errs, prompt=True)
    else:
        for i, m in enumerate(messages):
            if m["role"] not in ("assistant", None):
                errs.add(f"{key}[{i}].role", f"expected assistant, got {m['role']} (the prompt holds the rest)")
    return messages if len(errs.items) == before else None


def _text_format(record: dict[str, Any], errs: _Errors) -> dict[str, Any] | None:
    text = _text(record.get("text", _MISSING), "text", errs)
    return None if text is None else {"text": text}


_NORMALIZERS: dict[str, Callable[[dict[str, Any], _Errors], dict[str, Any] | None]] = {
    "alpaca": _alpaca, "chat": _chat, "sharegpt": _sharegpt, "preference": _preference, "text": _text_format,
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
        self.sink: Callable[[Example], None] | None = None

    def add(self, loc: Location, record: dict[str, Any] | RecordError) -> None:
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
                          error_count=self.error_count, dropped=self.dropped, total=self.total, valid=self.valid)

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
    if "instruction" in record:
        return "alpaca"
    return None


def _unrecognized(record: dict[str, Any]) -> str:
    keys = [k if len(k) <= 30 and k.isprintable() else _show(k) for k in map(str, list(record)[:8])]
    have = f"keys {', '.join(keys)}{', ...' if len(record) > 8 else ''}" if record else "no keys"
    return f"unrecognized record with {have}; expected {_SIGNATURE}"
