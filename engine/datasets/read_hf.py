"""Reading columnar sources: Parquet files, datasets saved with ``datasets.Dataset.save_to_disk`` and Hugging
Face hub datasets, in batches of BATCH rows (pyarrow and datasets are imported only here, when needed)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.datasets.read_csv import decode_json_cells
from engine.datasets.source_base import Record, SourceError, first_line
from engine.datasets.types import Location

__all__ = ["BATCH", "iter_hub", "iter_parquet", "iter_saved"]

BATCH = 1000  # Parquet / Hugging Face rows converted at a time


def iter_parquet(path: Path) -> Iterator[Record]:
    """The rows of a Parquet file, in batches; SourceError if it cannot be read."""
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
        raise SourceError(f"{path}: not a readable Parquet file ({first_line(e)})") from None

def iter_hub(spec: str) -> Iterator[Record]:
    """The rows of a Hugging Face hub dataset ``name[:config[:split]]`` (split train by default)."""
    name, config, split = ([*spec.split(":"), "", ""])[:3]
    try:
        import datasets

        ds = datasets.load_dataset(name, config or None, split=split or "train")
    except Exception as e:
        raise SourceError(_hub_failure(spec, name, e)) from None
    yield from _iter_hf_dataset(ds, spec)


def _hub_failure(spec: str, name: str, e: Exception) -> str:
    import os

    reason = first_line(e)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    hint = "; HF_HUB_OFFLINE is set, so only datasets already in the cache can be loaded" if offline else ""
    return (f"cannot load Hugging Face dataset '{spec}': {reason}{hint} "
            f"(there is no local file or directory named '{name}' either)")


def iter_saved(path: Path) -> Iterator[Record]:
    """The rows of a dataset saved with ``save_to_disk`` (its train split, or its only one)."""
    try:
        import datasets

        ds = datasets.load_from_disk(str(path))
    except Exception as e:
        raise SourceError(f"{path}: cannot load the saved dataset ({first_line(e)})") from None
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
        raise SourceError(f"{name}: reading failed at row {row + 1} ({first_line(e)})") from None
