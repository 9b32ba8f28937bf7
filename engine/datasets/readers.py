"""Reading dataset sources record by record.

A source is a ``.jsonl``, ``.json`` (an array of objects, or an object holding one list of them),
``.csv``, ``.parquet`` or ``.txt`` file (one ``{"text": ...}`` record per paragraph: lines separated by a
blank line), any of them but Parquet gzip-compressed (``.jsonl.gz``, or ``.gz`` holding JSON), a directory
of such files, a directory written by ``datasets.Dataset.save_to_disk``, or a Hugging Face dataset id
``name[:config[:split]]``. :func:`iter_records` yields ``(Location, dict | RecordError)`` pairs, one per
record, so a bad record never stops the read (and, for a JSON object, ``(Location, SourceFields)`` naming
its other top-level keys); a source that cannot be read at all raises :class:`SourceError`.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import re
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from engine.datasets.types import Location, RecordError
from store.errors import TunedeckError

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet",
            ".txt": "txt"}
EXPECTED_FILES = ".jsonl, .json, .csv, .parquet or .txt (or gzipped: .jsonl.gz, .json.gz, .csv.gz, .txt.gz)"
JSON_CELLS = ("messages", "conversations", "prompt", "chosen", "rejected", "completion", "segments",
              "history")  # JSON text allowed in table cells
BATCH = 1000  # Parquet / Hugging Face rows converted at a time
_CHUNK = 1 << 20
_CSV_FIELD_LIMIT = 1 << 28
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?(:[\w.-]*){0,2}", re.ASCII)
_WS = re.compile(r"[ \t\n\r]*")
_FILE_LIKE = {".txt", ".tsv", ".gz", ".zip", ".arrow", ".xlsx", ".xls", ".bz2", ".xz", ".zst"}
_SURROGATE = "invalid JSON: a \\u escape is an unpaired surrogate, which is not valid Unicode"



class SourceError(TunedeckError):
    """A source cannot be read at all (missing, unknown type, unreadable, empty); names the source."""


@dataclass(frozen=True)
class SourceFields:
    """Top-level keys of a JSON file that hold no records (beside the list that does): reported, not imported."""

    fields: tuple[str, ...]


Record = tuple[Location, dict[str, Any] | RecordError | SourceFields]


def kind(value: Any) -> str:
    """A value's type in words, for "expected X, got Y" messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def iter_records(source: str | Path) -> Iterator[Record]:
    """Every record of SOURCE in order, as ``(location, object)`` or ``(location, RecordError)``.

    Blank lines are skipped. Missing paths and unknown file types raise :class:`SourceError` at once;
    problems found while reading (unreadable Parquet, a failed hub load) raise it on iteration.
    """
    path = Path(source)
    if _is_hub_id(source, path):
        return _iter_hub(str(source))
    if path.is_dir() and _is_saved_dataset(path):
        return _iter_saved(path)
    return _iter_files(source_files(path))


def source_files(source: str | Path) -> list[Path]:
    """The data files SOURCE stands for, in reading order ([] for a Hugging Face id)."""
    path = Path(source)
    if _is_hub_id(source, path):
        return []
    if path.is_dir():
        if _is_saved_dataset(path):
            return sorted(p for p in path.rglob("*") if p.is_file())
        files = sorted(p for p in path.iterdir() if not p.name.startswith(".") and _data_file(p))
        files = [p for p in files if p.is_file()]
        if not files:
            raise SourceError(f"{path}: no {EXPECTED_FILES} files in this directory")
        return files
    if not path.exists():
        raise SourceError(f"{path}: no such file or directory")
    _file_type(path)
    return [path]


def count_hint(source: str | Path) -> int | None:
    """A cheap estimate of the number of records, for progress bars; None when unknown."""
    try:
        files = source_files(source)
    except SourceError:
        return None
    if not files:
        return None
    total = 0
    for file in files:
        hint = _file_hint(file)
        if hint is None:
            return None
        total += hint
    return total


# --- files -------------------------------------------------------------------------------------------


def _data_file(path: Path) -> bool:
    """Whether a directory's file is one of the readable kinds (by its name)."""
    suffix = path.suffix.lower()
    if suffix == ".gz":
        return Path(path.stem).suffix.lower() in SUFFIXES
    return suffix in SUFFIXES


def _file_type(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".gz":
        inner = Path(path.stem).suffix.lower()
        if inner == ".parquet":
            raise SourceError(f"{path}: a gzipped Parquet file; Parquet compresses itself, so give the .parquet file")
        return SUFFIXES.get(inner, "sniff")
    ftype = SUFFIXES.get(suffix)
    if ftype is None:
        what = f"unknown file type '{path.suffix}'" if path.suffix else "no file extension"
        raise SourceError(f"{path}: {what}, expected {EXPECTED_FILES}")
    return ftype


def _gzipped(path: Path) -> bool:
    return path.suffix.lower() == ".gz"


def _iter_files(files: list[Path]) -> Iterator[Record]:
    for file in files:
        yield from _iter_file(file)


def _iter_file(path: Path) -> Iterator[Record]:
    ftype = _file_type(path)
    try:
        empty = path.stat().st_size == 0
    except OSError as e:
        raise SourceError(f"{path}: cannot read: {e.strerror or e}") from None
    if empty:
        raise SourceError(f"{path}: the file is empty")
    if not _gzipped(path):
        yield from _READERS[ftype](path)
        return
    try:
        if ftype == "sniff":
            ftype = _sniff(path)
        yield from _READERS[ftype](path)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise SourceError(f"{path}: not a readable gzip file ({str(e) or type(e).__name__})") from None


def _sniff(path: Path) -> str:
    """The type of a bare ``.gz`` file's contents: JSON (an array, an object or JSON Lines) or unknown."""
    with _open(path) as f:
        head = f.read(4096).decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    if head[:1] in ("[", "{"):
        return "json"
    raise SourceError(f"{path}: cannot tell what this gzip file holds; name it .jsonl.gz, .json.gz, .csv.gz or "
                      ".txt.gz")


def _open(path: Path) -> BinaryIO:
    try:
        return gzip.open(path, "rb") if _gzipped(path) else open(path, "rb")  # type: ignore[return-value]
    except OSError as e:
        raise SourceError(f"{path}: cannot read: {e.strerror or e}") from None


def _file_hint(path: Path) -> int | None:
    ftype = SUFFIXES.get(path.suffix.lower())
    try:
        if ftype == "parquet":
            import pyarrow.parquet as pq

            return pq.read_metadata(path).num_rows
        if ftype in ("jsonl", "csv"):
            lines = _count_lines(path)
            return max(lines - 1, 0) if ftype == "csv" else lines
    except Exception:
        return None
    return None


def _count_lines(path: Path) -> int:
    count, last = 0, b"\n"
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


def _utf8_problem(raw: bytes, e: UnicodeDecodeError) -> str:
    return f"byte 0x{raw[e.start]:02x} at column {e.start + 1}"


# --- JSON Lines ----------------------------------------------------------------------------------------


def _iter_jsonl(path: Path) -> Iterator[Record]:
    name = str(path)
    with _open(path) as f:
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
        return RecordError(loc, "", f"invalid UTF-8 ({_utf8_problem(raw, e)})")
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return RecordError(loc, "", f"invalid JSON: {_line_json_problem(text.rstrip())}")
    except (ValueError, RecursionError) as e:
        return RecordError(loc, "", f"invalid JSON: {_other_json_problem(e)}")
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
        return f"{_json_problem(e)} {where}"
    except (ValueError, RecursionError) as e:
        return _other_json_problem(e)
    return "unreadable"  # not reached: the line failed to parse with its line break


def _json_problem(e: json.JSONDecodeError) -> str:
    msg = e.msg.removesuffix(" at")
    return msg[:1].lower() + msg[1:]


def _other_json_problem(e: Exception) -> str:
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


# --- JSON arrays ---------------------------------------------------------------------------------------


def _iter_json(path: Path) -> Iterator[Record]:
    with _open(path) as f:
        data = f.read()
    text = _decode_whole(path, data)
    del data
    start = _WS.match(text).end()
    if text.startswith("{", start):
        if _looks_like_json_lines(text, start):
            yield from _iter_jsonl(path)
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


# --- plain text ----------------------------------------------------------------------------------------


def _iter_txt(path: Path) -> Iterator[Record]:
    """One ``{"text": paragraph}`` record per paragraph (lines up to a blank line), located at its first line."""
    name, lines, first = str(path), [], 0
    with _open(path) as f:
        for n, raw in enumerate(f, 1):
            if n == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[3:]
            if raw.strip():
                if not lines:
                    first = n
                lines.append((n, raw))
                continue
            if lines:
                yield _paragraph(name, first, lines)
                lines = []
        if lines:
            yield _paragraph(name, first, lines)


def _paragraph(name: str, first: int, lines: list[tuple[int, bytes]]) -> Record:
    loc = Location(name, first)
    out = []
    for n, raw in lines:
        try:
            out.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError as e:
            return loc, RecordError(loc, "", f"invalid UTF-8 on line {n} ({_utf8_problem(raw, e)})")
    return loc, {"text": "\n".join(out)}


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
        _json_syntax_error(path, text, e.pos, _json_problem(e))
    except (ValueError, RecursionError) as e:
        _json_syntax_error(path, text, pos, _other_json_problem(e))
    raise AssertionError("unreachable")


def _json_syntax_error(path: Path, text: str, pos: int, problem: str) -> None:
    line = text.count("\n", 0, pos) + 1
    column = pos - (text.rfind("\n", 0, pos) + 1) + 1
    raise SourceError(f"{path}:{line}: invalid JSON: {problem} at column {column}")


# --- CSV -----------------------------------------------------------------------------------------------


def _iter_csv(path: Path) -> Iterator[Record]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)
    with _open(path) as f:
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
            bad[n] = _utf8_problem(raw, e)
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
                return RecordError(loc, key, f"invalid JSON in the cell: {_json_problem(e)} at column {e.colno}")
            continue
        except (ValueError, RecursionError) as e:
            if key in ("messages", "conversations"):
                return RecordError(loc, key, f"invalid JSON in the cell: {_other_json_problem(e)}")
            continue
        if key in ("messages", "conversations") or (
            isinstance(parsed, list) and parsed and all(isinstance(m, dict) for m in parsed)
        ):
            record[key] = parsed
    return record


# --- Parquet -------------------------------------------------------------------------------------------


def _iter_parquet(path: Path) -> Iterator[Record]:
    name, row = str(path), 0
    for batch in _parquet_batches(path):
        for record in batch:
            row += 1
            loc = Location(name, row, "row")
            yield loc, decode_json_cells(record, loc)


def _parquet_batches(path: Path) -> Iterator[list[dict[str, Any]]]:
    import pyarrow.parquet as pq

    try:
        batches = pq.ParquetFile(path).iter_batches(batch_size=BATCH)
        for batch in batches:
            yield batch.to_pylist()
    except (OSError, ValueError, TypeError, NotImplementedError) as e:  # pyarrow's errors derive from these
        raise SourceError(f"{path}: not a readable Parquet file ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().split("\n")[0] or type(e).__name__
    return text[:300]


# --- Hugging Face datasets -----------------------------------------------------------------------------


def _is_hub_id(source: str | Path, path: Path) -> bool:
    """A string naming no local path that reads ``name``, ``org/name``, with ``:config[:split]``."""
    if not isinstance(source, str) or path.exists() or not _HUB_ID.fullmatch(source):
        return False
    name = source.split(":")[0]
    suffix = Path(name).suffix.lower()
    return suffix not in SUFFIXES and suffix not in _FILE_LIKE and ("/" in name or not suffix)


def _is_saved_dataset(path: Path) -> bool:
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


def _iter_hub(spec: str) -> Iterator[Record]:
    name, config, split = ([*spec.split(":"), "", ""])[:3]
    try:
        import datasets

        ds = datasets.load_dataset(name, config or None, split=split or "train")
    except Exception as e:
        raise SourceError(_hub_failure(spec, name, e)) from None
    yield from _iter_hf_dataset(ds, spec)


def _hub_failure(spec: str, name: str, e: Exception) -> str:
    import os

    reason = _first_line(e)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    hint = "; HF_HUB_OFFLINE is set, so only datasets already in the cache can be loaded" if offline else ""
    return (f"cannot load Hugging Face dataset '{spec}': {reason}{hint} "
            f"(there is no local file or directory named '{name}' either)")


def _iter_saved(path: Path) -> Iterator[Record]:
    try:
        import datasets

        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise SourceError(f"{path}: cannot load the saved dataset ({_first_line(e)})") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" in ds:
            ds = ds["train"]
        elif len(ds) == 1:
            ds = next(iter(ds.values()))
        else:
            raise SourceError(f"{path}: a saved dataset with splits {', '.join(ds)} and no 'train' split")
    yield from _iter_hf_dataset(ds, str(path))


def _iter_hf_dataset(ds: Any, name: str) -> Iterator[Record]:
    row = 0
    try:
        for table in ds.with_format("arrow").iter(batch_size=BATCH):
            for record in table.to_pylist():
                row += 1
                loc = Location(name, row, "row")
                yield loc, decode_json_cells(record, loc)
    except (OSError, ValueError, TypeError) as e:
        raise SourceError(f"{name}: reading failed at row {row + 1} ({_first_line(e)})") from None


_READERS = {"jsonl": _iter_jsonl, "json": _iter_json, "csv": _iter_csv, "parquet": _iter_parquet, "txt": _iter_txt}
