"""The dataset verbs both faces call: queue an import, delete a dataset (or a failed import of its name)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from store.db import Store

if TYPE_CHECKING:
    from engine.cleanup import DatasetDeleted


def queue_import(store: Store, project: str, source: str, name: str | None = None, **options: Any) -> int:
    """Check what can be checked now (the source, the name, the options), queue a `dataset-import` job of
    `project` and start the data runner; returns the job id. `options`: format, val_fraction, seed, dedup,
    near_threshold, on_error, tokenizer, max_length."""
    from engine.datasets.queue import queue_import as queue

    return queue(store, project, source, name=name, **options)


def delete_dataset(store: Store, ref: str, project: str | None = None, force: bool = False) -> DatasetDeleted:
    """Delete dataset `ref` (a name, within `project` when given, or an id) with its snapshot and the failed
    imports of its name; refused while a queued or running job uses it, and without `force` when ended runs or
    evaluations used it."""
    from engine.cleanup import delete_dataset as delete

    return delete(store, ref, project, force=force)
