"""Reading JSON sources: JSON Lines (one object per line, a bad line is one bad record) and JSON files holding
an array of objects, or an object holding one list of them (its other keys reported as SourceFields)."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.datasets.source_base import Record, SourceError, SourceFields, kind, open_source, utf8_problem
from engine.datasets.types import Location, RecordError

__all__ = ["iter_json", "iter_jsonl", "json_problem", "other_json_problem"]

_WS = re.compile(r"[ \t\n\r]*")
_SURROGATE = "invalid JSON: a \\u escape is an unpaired surrogate, which is not valid Unicode"


def iter_jsonl(path: Path) -> Iterator[Record]:
    """One record per non-blank line; a line that is not a JSON object is a RecordError."""
    name = str(path)
    with open_source(path) as f:
        for n, raw in enumerate(f, 1):
            if n == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[3:]
            if not raw or raw.isspace():
                continue
            loc = Location(name, n)
            yield loc, _parse_line(raw, loc)


def _parse_line(raw: bytes, loc: Location) -> dict[str, Any] | RecordError:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return RecordError(loc, "", f"invalid UTF-8 ({utf8_problem(raw, e)})")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return RecordError(loc, "", f"invalid JSON: {_line_json_problem(text.rstrip())}")
    except (ValueError, RecursionError) as e:
        return RecordError(loc, "", f"invalid JSON: {other_json_problem(e)}")
    if not isinstance(value, dict):
        return RecordError(loc, "", f"expected a JSON object, got {kind(value)}")
    if (b"\\ud" in raw or b"\\uD" in raw) and _has_surrogate(value):
        return RecordError(loc, "", _SURROGATE)
    return value


def _line_json_problem(line: str) -> str:
    """What is wrong with a line of JSON (without its line break), and where."""
    try:
        json.loads(line)
    except json.JSONDecodeError as e:
        where = "at the end of the line" if e.pos >= len(line) else f"at column {e.colno}"
        return f"{json_problem(e)} {where}"
    except (ValueError, RecursionError) as e:
        return other_json_problem(e)
    return "unreadable"  # not reached: the line failed to parse with its line break


def json_problem(e: json.JSONDecodeError) -> str:
    """A JSONDecodeError's message, first letter in lower case, without its trailing "at"."""
    msg = e.msg.removesuffix(" at")
    return msg[:1].lower() + msg[1:]


def other_json_problem(e: Exception) -> str:
    """Another JSON failure (too deep, a bad number) in words."""
    if isinstance(e, RecursionError):
        return "nested too deeply"
    return str(e).split("\n")[0][:200]


def _has_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except RecursionError:
        return False  # too deep to check; normalizing reads only the top levels
    return False

def iter_json(path: Path) -> Iterator[Record]:
    """The records of a JSON file: an array of objects, an object holding one list, or JSON Lines named .json."""
    with open_source(path) as f:
        data = f.read()
    text = _decode_whole(path, data)
    del data
    start = _WS.match(text).end()
    if text.startswith("{", start):
        if _looks_like_json_lines(text, start):
            yield from iter_jsonl(path)
            return
        yield from _iter_object(path, text, start)
        return
    if not text.startswith("[", start):
        if start == len(text):
            raise SourceError(f"{path}: the file is empty")
        value, _ = _json_value_at(path, text, start)  # raises on invalid JSON
        raise SourceError(f"{path}: expected a JSON array of objects at the top level, got {kind(value)}")
    yield from _iter_array(path, text, start + 1)


def _iter_object(path: Path, text: str, start: int) -> Iterator[Record]:
    """A top-level object holding the records as its one list (``{"data": [...]}``, ``{"train": [...]}``);
    its other keys come first as :class:`SourceFields`, to be reported."""
    value, end = _json_value_at(path, text, start)
    if _WS.match(text, end).end() != len(text):
        _json_syntax_error(path, text, _WS.match(text, end).end(), "extra data after the top-level object")
    lists = [k for k, v in value.items() if isinstance(v, list)]
    if len(lists) != 1:
        keys = ", ".join(list(value)[:8]) or "no keys"
        what = f"lists under {', '.join(lists)}" if lists else f"no list (keys: {keys})"
        raise SourceError(f"{path}: expected a JSON array of records, or an object holding one list of them; "
                          f"this object holds {what}")
    others = tuple(k for k in value if k != lists[0])
    if others:
        yield Location(str(path), 0, "row"), SourceFields(others)
    escapes = "\\ud" in text or "\\uD" in text
    for row, element in enumerate(value[lists[0]], 1):
        loc = Location(str(path), row, "row")
        yield loc, _array_element(element, loc, escapes)

def _decode_whole(path: Path, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line_start = data.rfind(b"\n", 0, e.start) + 1
        line = data.count(b"\n", 0, e.start) + 1
        raise SourceError(f"{path}:{line}: invalid UTF-8 (byte 0x{data[e.start]:02x} at column "
                          f"{e.start - line_start + 1})") from None


def _looks_like_json_lines(text: str, start: int) -> bool:
    end = text.find("\n", start)
    first = text[start:end if end >= 0 else len(text)]
    try:
        return isinstance(json.loads(first), dict)
    except (ValueError, RecursionError):
        return False


def _iter_array(path: Path, text: str, pos: int) -> Iterator[Record]:
    name, row = str(path), 0
    escapes = "\\ud" in text or "\\uD" in text
    pos = _WS.match(text, pos).end()
    if text.startswith("]", pos):
        pos += 1
    else:
        while True:
            value, pos = _json_value_at(path, text, pos)
            row += 1
            loc = Location(name, row, "row")
            yield loc, _array_element(value, loc, escapes)
            pos = _WS.match(text, pos).end()
            if text.startswith("]", pos):
                pos += 1
                break
            if not text.startswith(",", pos):
                _json_syntax_error(path, text, pos, "expecting ',' or ']' after an array element")
            pos = _WS.match(text, pos + 1).end()
    if _WS.match(text, pos).end() != len(text):
        _json_syntax_error(path, text, _WS.match(text, pos).end(), "extra data after the top-level array")


def _array_element(value: Any, loc: Location, escapes: bool) -> dict[str, Any] | RecordError:
    if not isinstance(value, dict):
        return RecordError(loc, "", f"expected a JSON object, got {kind(value)}")
    if escapes and _has_surrogate(value):
        return RecordError(loc, "", _SURROGATE)
    return value


_DECODER = json.JSONDecoder()


def _json_value_at(path: Path, text: str, pos: int) -> tuple[Any, int]:
    try:
        return _DECODER.raw_decode(text, pos)
    except json.JSONDecodeError as e:
        _json_syntax_error(path, text, e.pos, json_problem(e))
    except (ValueError, RecursionError) as e:
        _json_syntax_error(path, text, pos, other_json_problem(e))
    raise AssertionError("unreachable")


def _json_syntax_error(path: Path, text: str, pos: int, problem: str) -> None:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    raise SourceError(f"{path}:{line}: invalid JSON: {problem} at column {column}")
