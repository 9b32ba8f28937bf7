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
import gzip
import re
import zlib
from collections.abc import Iterator
from pathlib import Path

from engine.datasets.read_csv import JSON_CELLS, decode_json_cells, iter_csv
from engine.datasets.read_hf import BATCH, iter_hub, iter_parquet, iter_saved
from engine.datasets.read_json import iter_json, iter_jsonl
from engine.datasets.source_base import Record, SourceError, SourceFields, gzipped, kind, open_source, utf8_problem
from engine.datasets.types import Location, RecordError

__all__ = [  # the names the importer, the formats and the tests use, wherever they are defined
    "BATCH",
    "EXPECTED_FILES",
    "JSON_CELLS",
    "SUFFIXES",
    "Record",
    "SourceError",
    "SourceFields",
    "count_hint",
    "decode_json_cells",
    "iter_records",
    "kind",
    "source_files",
]

SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet",
            ".txt": "txt"}
EXPECTED_FILES = ".jsonl, .json, .csv, .parquet or .txt (or gzipped: .jsonl.gz, .json.gz, .csv.gz, .txt.gz)"
_CHUNK = 1 << 20
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?(:[\w.-]*){0,2}", re.ASCII)
_FILE_LIKE = {".txt", ".tsv", ".gz", ".zip", ".arrow", ".xlsx", ".xls", ".bz2", ".xz", ".zst"}


def iter_records(source: str | Path) -> Iterator[Record]:
    """Every record of SOURCE in order, as ``(location, object)`` or ``(location, RecordError)``.

    Blank lines are skipped. Missing paths and unknown file types raise :class:`SourceError` at once;
    problems found while reading (unreadable Parquet, a failed hub load) raise it on iteration.
    """
    path = Path(source)
    if _is_hub_id(source, path):
        return iter_hub(str(source))
    if path.is_dir() and _is_saved_dataset(path):
        return iter_saved(path)
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
    if not gzipped(path):
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
    with open_source(path) as f:
        head = f.read(4096).decode("utf-8", "replace").lstrip("\ufeff \t\r\n")
    if head[:1] in ("[", "{"):
        return "json"
    raise SourceError(f"{path}: cannot tell what this gzip file holds; name it .jsonl.gz, .json.gz, .csv.gz or "
                      ".txt.gz")

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


# --- plain text ----------------------------------------------------------------------------------------


def _iter_txt(path: Path) -> Iterator[Record]:
    """One ``{"text": paragraph}`` record per paragraph (lines up to a blank line), located at its first line."""
    name, lines, first = str(path), [], 0
    with open_source(path) as f:
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
            return loc, RecordError(loc, "", f"invalid UTF-8 on line {n} ({utf8_problem(raw, e)})")
    return loc, {"text": "\n".join(out)}


# --- Hugging Face datasets (read in engine.datasets.read_hf) ------------------------------------------


def _is_hub_id(source: str | Path, path: Path) -> bool:
    """A string naming no local path that reads ``name``, ``org/name``, with ``:config[:split]``."""
    if not isinstance(source, str) or path.exists() or not _HUB_ID.fullmatch(source):
        return False
    name = source.split(":")[0]
    suffix = Path(name).suffix.lower()
    return suffix not in SUFFIXES and suffix not in _FILE_LIKE and ("/" in name or not suffix)


def _is_saved_dataset(path: Path) -> bool:
    return (path / "state.json").is_file() or (path / "dataset_dict.json").is_file()


_READERS = {"jsonl": iter_jsonl, "json": iter_json, "csv": iter_csv, "parquet": iter_parquet, "txt": _iter_txt}
