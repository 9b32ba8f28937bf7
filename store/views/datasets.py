"""Datasets: one dataset's detail, the jobs that use it, and the imports listed beside a project's datasets."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from store.errors import NotFound


@dataclass(frozen=True)
class DatasetDetail:
    """One dataset's row with its project's name: what the dataset screen shows above its tabs."""

    id: int
    project: str
    name: str
    format: str
    source: str
    path: str
    num_train: int
    num_val: int
    content_hash: str
    lint: str  # the JSON text of the verdict and checklist
    created_at: float


def dataset_detail(conn: sqlite3.Connection, dataset_id: int) -> DatasetDetail:
    """The dataset with id `dataset_id`, or NotFound."""
    row = conn.execute(
        "SELECT d.id, p.name, d.name, d.format, d.source, d.path, d.num_train, d.num_val, d.content_hash, d.lint, "
        "d.created_at FROM datasets d JOIN projects p ON p.id = d.project_id WHERE d.id = ?",
        (dataset_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no dataset with id {dataset_id}")
    return DatasetDetail(*row)


DATASET_USERS_SQL = ("SELECT id, kind, status FROM jobs WHERE kind != 'dataset-import' AND "
                     "json_extract(config, '$.dataset_id') = ? ORDER BY id")


def dataset_users(conn: sqlite3.Connection, dataset_id: int) -> list[tuple[int, str, str]]:
    """(id, kind, status) of the jobs (training runs, evaluations) whose config names dataset `dataset_id`."""
    return [(int(i), str(k), str(s)) for i, k, s in conn.execute(DATASET_USERS_SQL, (dataset_id,))]


IMPORT_KIND = "dataset-import"
IMPORT_ACTIVE = ("queued", "running")
IMPORT_FAILED = ("failed", "cancelled", "interrupted")


def listed_imports(datasets: list[Any], jobs: list[Any]) -> list[Any]:
    """The import jobs a project's dataset list shows beside its datasets (`dataset list` and the Datasets tab):
    each name's latest import, while it is queued or running, or when it failed (or was cancelled or interrupted)
    and no dataset has that name; those in progress first, then newest first. `datasets` and `jobs` are rows
    with `name` (and, for jobs, `kind` and `status`), jobs newest first as `project_contents` reads them."""
    names = {d.name for d in datasets}
    latest: set[str] = set()
    shown = []
    for j in jobs:
        if j.kind != IMPORT_KIND or j.name in latest:
            continue
        latest.add(j.name)
        if j.name not in names and (j.status in IMPORT_ACTIVE or j.status in IMPORT_FAILED):
            shown.append(j)
    shown.sort(key=lambda j: j.status not in IMPORT_ACTIVE)  # a stable sort: in progress first
    return shown
