"""Detecting, validating and normalizing dataset records (see ``types`` for the normalized shapes; each
format's own rules are in ``normalizers``), and loading a whole source.

Every problem of a record is reported, each as ``file:line: field: message`` with the field's path
(``messages[2].role``) and what was expected; :func:`load_examples` reads a whole source.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.datasets.messages import (
    Problems,
    empty,
    media_problem,
    show,
)
from engine.datasets.normalizers import NORMALIZERS
from engine.datasets.readers import SourceFields, iter_records
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
    data = NORMALIZERS[fmt](record, errs)
    if errs.items or data is None:
        return errs.items
    used = errs.used
    if errs.unused or any(k not in used for k in record):
        unused = sorted({k for k, v in record.items() if k not in used and not empty(v)} | errs.unused)
        if unused:
            return Example(data=data, location=loc, format=fmt, extra={"unused": unused})
    return Example(data=data, location=loc, format=fmt)

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
