"""Reading CSV sources: a header row naming the columns, one record per row; conversation columns may hold
JSON text (decode_json_cells, shared with the other table formats)."""

from __future__ import annotations

import codecs
import csv
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from engine.datasets.read_json import json_problem, other_json_problem
from engine.datasets.source_base import Record, SourceError, open_source, utf8_problem
from engine.datasets.types import Location, RecordError

__all__ = ["JSON_CELLS", "decode_json_cells", "iter_csv"]

JSON_CELLS = ("messages", "conversations", "prompt", "chosen", "rejected", "completion", "segments",
              "history")  # JSON text allowed in table cells
_CSV_FIELD_LIMIT = 1 << 28


def iter_csv(path: Path) -> Iterator[Record]:
    """One record per row, keyed by the header's column names; a malformed row is a RecordError."""
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    with open_source(path) as f:
        bad: dict[int, str] = {}
        reader = csv.reader(_decoded_lines(f, bad), strict=True)
        header = _csv_header(path, reader, bad)
        yield from _csv_rows(str(path), reader, header, bad)


def _decoded_lines(lines: Iterable[bytes], bad: dict[int, str]) -> Iterator[str]:
    """Lines as text; a line that is not UTF-8 is noted in BAD (by line number) and decoded lossily."""
    for n, raw in enumerate(lines, 1):
        if n == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[3:]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            bad[n] = utf8_problem(raw, e)
            yield raw.decode("utf-8", "replace")


def _csv_header(path: Path, reader: Any, bad: dict[int, str]) -> list[str]:
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise SourceError(f"{path}: malformed CSV header: {_csv_problem(e)}") from None
    if bad:
        raise SourceError(f"{path}:1: invalid UTF-8 in the header ({bad[min(bad)]})")
    if not header:
        raise SourceError(f"{path}: no header row (the first line must name the columns)")
    names = [h.strip() for h in header]
    seen: set[str] = set()
    for h in names:
        if h and h in seen:
            raise SourceError(f"{path}: the header names column '{h}' twice")
        seen.add(h)
    return names


def _csv_rows(name: str, reader: Any, header: list[str], bad: dict[int, str]) -> Iterator[Record]:
    row, last_line = 0, reader.line_num
    while True:
        try:
            fields = next(reader)
            problem = None
        except StopIteration:
            return
        except csv.Error as e:
            fields, problem = None, f"malformed CSV: {_csv_problem(e)}"
        first, last_line = last_line + 1, reader.line_num
        if fields == []:
            continue  # a blank line
        row += 1
        loc = Location(name, row, "row")
        lines = f"line {first}" if first == last_line else f"lines {first}-{last_line}"
        bad_here = [n for n in range(first, last_line + 1) if n in bad] if bad else []
        if bad_here:
            yield loc, RecordError(loc, "", f"invalid UTF-8 on line {bad_here[0]} ({bad[bad_here[0]]})")
            for n in bad_here:
                del bad[n]
        elif problem is not None:
            yield loc, RecordError(loc, "", f"{problem} ({lines})")
        elif len(fields) != len(header):
            yield loc, RecordError(loc, "", f"expected {len(header)} fields as in the header, got {len(fields)} "
                                            f"({lines})")
        else:
            record = {h: v for h, v in zip(header, fields, strict=True) if h}
            yield loc, decode_json_cells(record, loc)


def _csv_problem(e: csv.Error) -> str:
    text = str(e)
    if text == "unexpected end of data":
        return "a quoted field is not closed by the end of the file"
    if text.startswith("new-line character seen in unquoted field"):
        return "a bare carriage return (\\r) in an unquoted field; lines must end with \\n or \\r\\n"
    return text


def decode_json_cells(record: dict[str, Any], loc: Location) -> dict[str, Any] | RecordError:
    """Parse table cells of conversation fields that hold JSON text (a chat CSV), in place."""
    for key in JSON_CELLS:
        value = record.get(key)
        if not isinstance(value, str) or value.lstrip()[:1] not in ("[", "{"):
            continue
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as e:
            if key in ("messages", "conversations"):
                return RecordError(loc, key, f"invalid JSON in the cell: {json_problem(e)} at column {e.colno}")
            continue
        except (ValueError, RecursionError) as e:
            if key in ("messages", "conversations"):
                return RecordError(loc, key, f"invalid JSON in the cell: {other_json_problem(e)}")
            continue
        if key in ("messages", "conversations") or (
            isinstance(parsed, list) and parsed and all(isinstance(m, dict) for m in parsed)
        ):
            record[key] = parsed
    return record
