"""A dataset's snapshot folder read for the dataset screen, in worker threads: the row, `report.json`,
the preview filters' flagged ids (`flags.json`, else what the report lists) and a split's line index.

A split is never loaded into memory: it is read once into the byte offset and id of each line, and
each page reads one line.
"""

from __future__ import annotations

import json
import re
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from store.db import Store
from store.views import DatasetDetail, dataset_detail

_ID_PREFIX = re.compile(rb'^\{"id":(-?\d+)[,}]')


@dataclass
class DatasetData:
    """One read of a dataset: its row, report and flagged ids."""

    detail: DatasetDetail
    report: dict[str, Any] | None = None
    problem: str = ""  # why there is no report
    flags: dict[str, set[int]] = field(default_factory=dict)  # filter -> flagged ids
    flags_partial: bool = False  # derived from the report's (capped) id lists, not flags.json

    @property
    def folder(self) -> Path:
        return Path(self.detail.path)


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def _ids(value: Any) -> set[int]:
    return {int(i) for i in value or () if isinstance(i, int | str) and str(i).lstrip("-").isdigit()}


def flags_from_file(data: dict[str, Any]) -> dict[str, set[int]]:
    """The preview's filters from `flags.json` ({kind: [ids]})."""
    return {
        "duplicates": _ids(data.get("exact_duplicate")) | _ids(data.get("near_duplicate")),
        "pii": _ids(data.get("pii")),
        "too_long": _ids(data.get("too_long")),
        "masked_out": _ids(data.get("masked_out")),
    }


def flags_from_report(report: dict[str, Any]) -> dict[str, set[int]]:
    """What the filters can know from a report alone (its id lists keep the first few of each kind)."""
    dup = report.get("duplicates") or {}
    duplicates: set[int] = set()
    for section in ("exact", "near"):
        for example in (dup.get(section) or {}).get("examples") or ():
            duplicates |= _ids(example.get("ids"))
    pii: set[int] = set()
    for value in (report.get("pii") or {}).values():
        if isinstance(value, dict):
            pii |= _ids(value.get("ids"))
    tokens = report.get("tokens") or {}
    issues = (report.get("structure") or {}).get("issues") or {}
    masked = _ids((issues.get("no_assistant_turn") or {}).get("ids"))
    return {"duplicates": duplicates, "pii": pii, "too_long": _ids(tokens.get("over_max_ids")), "masked_out": masked}


def load_dataset(store: Store, dataset_id: int) -> DatasetData:
    """The dataset's row, `report.json` and flags (from `flags.json`, else derived from the report)."""
    with store.raw() as conn:
        detail = dataset_detail(conn, dataset_id)
    data = DatasetData(detail)
    folder = data.folder
    if not detail.path or not folder.is_dir():
        data.problem = f"The snapshot folder {detail.path or '(none recorded)'} is missing."
        return data
    try:
        data.report = _read_json(folder / "report.json")
    except FileNotFoundError:
        data.problem = f"There is no report.json in {folder}."
    except (OSError, ValueError) as error:
        data.problem = f"Could not read {folder / 'report.json'}: {error}"
    try:
        data.flags = flags_from_file(_read_json(folder / "flags.json"))
    except (OSError, ValueError, AttributeError):
        data.flags = flags_from_report(data.report or {})
        data.flags_partial = True
    return data


@dataclass
class SplitIndex:
    """Where each record of a split's JSONL file starts, and its id."""

    split: str
    path: Path
    offsets: array = field(default_factory=lambda: array("q"))
    ids: array = field(default_factory=lambda: array("q"))
    missing: bool = False

    def __len__(self) -> int:
        return len(self.offsets)


def index_split(folder: Path, split: str) -> SplitIndex:
    """One pass over `<split>.jsonl`: the byte offset and id of every record (no record is kept)."""
    path = folder / f"{split}.jsonl"
    index = SplitIndex(split, path)
    if not path.is_file():
        index.missing = True
        return index
    position = 0
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                match = _ID_PREFIX.match(line)
                if match:
                    record_id = int(match.group(1))
                else:
                    try:
                        record_id = int(json.loads(line).get("id", len(index.ids)))
                    except (ValueError, AttributeError, TypeError):
                        record_id = -1
                index.offsets.append(position)
                index.ids.append(record_id)
            position += len(line)
    return index


def read_record(path: Path, offset: int) -> dict[str, Any]:
    """The record whose line starts at `offset`."""
    with path.open("rb") as fh:
        fh.seek(offset)
        line = fh.readline()
    try:
        value = json.loads(line)
    except ValueError as error:
        return {"_error": f"line at byte {offset} is not valid JSON: {error}"}
    return value if isinstance(value, dict) else {"_error": f"line at byte {offset} is not a JSON object"}
