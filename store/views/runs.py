"""Training runs: a project's Runs tab, a run's detail and latest metrics, the new-run form's choices and the
compare view's series."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from store.errors import NotFound, Refused
from store.views.rows import ROW_LIMIT, json_dict, named_rows

TRAIN_KIND = "train"


@dataclass(frozen=True)
class RunRow:
    """One row of a project's Runs tab: a training run with its latest train loss and ETA. `eta_s` is the
    engine's estimate written at `eta_at` (epoch seconds)."""

    id: int
    kind: str
    name: str
    status: str
    step: int
    total_steps: int | None
    progress: float
    error: str | None
    slot: str
    objective: str | None
    method: str | None
    model: str | None
    dataset: str | None
    loss: float | None
    eta_s: float | None
    eta_at: float | None
    updated_at: float


# The latest value of one metric per job: (job_id, step, name) is unique and indexed in that order, so each
# subquery walks that job's index entries backwards from its newest step and stops at the first match.
_LATEST = "(SELECT {col} FROM metrics m WHERE m.job_id = j.id AND m.name = '{name}' ORDER BY m.step DESC LIMIT 1)"

PROJECT_RUNS_SQL = f"""
SELECT j.id, j.kind, j.name, j.status, j.step, j.total_steps, j.progress, j.error, j.slot,
    json_extract(j.config, '$.run.objective'), json_extract(j.config, '$.run.method'),
    json_extract(j.config, '$.run.model'), json_extract(j.config, '$.run.dataset'),
    {_LATEST.format(col="value", name="loss")},
    {_LATEST.format(col="value", name="eta_s")},
    {_LATEST.format(col="created_at", name="eta_s")},
    j.updated_at
FROM jobs j
WHERE j.project_id = ? AND j.kind = '{TRAIN_KIND}'
ORDER BY j.id DESC
LIMIT ?
"""


def project_runs(conn: sqlite3.Connection, project_id: int, limit: int = ROW_LIMIT) -> list[RunRow]:
    """A project's training runs (the other jobs show on the Jobs screen, imports with the datasets too),
    newest first, with each one's latest `loss` and `eta_s` metric: one query, cheap for any number of
    metric points."""
    rows = conn.execute(PROJECT_RUNS_SQL, (project_id, limit))
    return [RunRow(*row) for row in rows]


def latest_values(conn: sqlite3.Connection, job_id: int, names: tuple[str, ...]) -> dict[str, float]:
    """The newest value of each of a job's metrics `names` that it has (one index walk per name)."""
    out: dict[str, float] = {}
    for name in names:
        row = conn.execute("SELECT value FROM metrics WHERE job_id = ? AND name = ? ORDER BY step DESC LIMIT 1",
                           (job_id, name)).fetchone()  # fmt: skip
        if row is not None:
            out[name] = float(row[0])
    return out


@dataclass(frozen=True)
class RunDetail:
    """One job as the run screen shows it; `config` and `result` are decoded JSON."""

    id: int
    project: str
    kind: str
    name: str
    status: str
    step: int
    total_steps: int | None
    progress: float
    error: str | None
    log_path: str | None
    slot: str
    cancel_requested: bool
    config: dict[str, Any]
    result: dict[str, Any]
    created_at: float
    started_at: float | None
    finished_at: float | None
    heartbeat_at: float | None
    updated_at: float


def run_detail(conn: sqlite3.Connection, job_id: int) -> RunDetail:
    """The job with id `job_id` and its project's name, or NotFound."""
    row = conn.execute(
        "SELECT j.id, p.name, j.kind, j.name, j.status, j.step, j.total_steps, j.progress, j.error, j.log_path, "
        "j.slot, j.cancel_requested, j.config, j.result, j.created_at, j.started_at, j.finished_at, j.heartbeat_at, "
        "j.updated_at FROM jobs j JOIN projects p ON p.id = j.project_id WHERE j.id = ?",
        (job_id,),
    ).fetchone()
    if row is None:
        raise NotFound(f"no job with id {job_id}")
    values = list(row)
    values[11] = bool(values[11])
    values[12] = json_dict(values[12])
    values[13] = json_dict(values[13])
    return RunDetail(*values)


@dataclass(frozen=True)
class RunChoices:
    """What the new-run form offers for a project: its datasets and its model artifacts."""

    project_id: int
    datasets: list[Any]  # DatasetChoice(id, name, format, num_train, num_val), newest first
    models: list[Any]  # ModelChoice(id, kind, name, path), newest first


def run_choices(conn: sqlite3.Connection, project: str) -> RunChoices:
    """The datasets and model artifacts (kind model or merged) of project `project`, or NotFound."""
    row = conn.execute("SELECT id FROM projects WHERE name = ?", (project,)).fetchone()
    if row is None:
        raise NotFound(f"no project named {project!r}")
    pid = row[0]
    datasets = named_rows(conn, "DatasetChoice", "SELECT id, name, format, num_train, num_val FROM datasets "
                     "WHERE project_id = ? ORDER BY id DESC LIMIT ?", (pid, ROW_LIMIT))  # fmt: skip
    models = named_rows(conn, "ModelChoice", "SELECT id, kind, name, path FROM artifacts WHERE project_id = ? "
                   "AND kind IN ('model', 'merged') ORDER BY id DESC LIMIT ?", (pid, ROW_LIMIT))  # fmt: skip
    return RunChoices(pid, datasets, models)


@dataclass(frozen=True)
class CompareRun:
    """One run as the compare view shows it: its row, decoded config and the points of some metrics."""

    id: int
    kind: str
    name: str
    status: str
    step: int
    total_steps: int | None
    config: dict[str, Any]
    series: dict[str, list[tuple[int, float]]]  # metric name -> (step, value) points, oldest first


def compare_runs(conn: sqlite3.Connection, job_ids: list[int], metrics: tuple[str, ...] = ("loss", "eval_loss"),
                 ) -> list[CompareRun]:  # fmt: skip
    """Training runs `job_ids` (in that order) with their `metrics` series, in one read transaction; NotFound if
    one is gone, Refused if one is another kind of job (a merge or an eval has no curves to compare)."""
    marks = ", ".join("?" for _ in metrics)
    conn.execute("BEGIN")
    try:
        runs = []
        for job_id in job_ids:
            row = conn.execute("SELECT id, kind, name, status, step, total_steps, config FROM jobs WHERE id = ?",
                               (job_id,)).fetchone()  # fmt: skip
            if row is None:
                raise NotFound(f"no job with id {job_id}")
            if row[1] != TRAIN_KIND:
                raise Refused(f"job {job_id} is a {row[1]} job, not a training run: only runs can be compared")
            series: dict[str, list[tuple[int, float]]] = {name: [] for name in metrics}
            points = conn.execute(f"SELECT name, step, value FROM metrics WHERE job_id = ? AND name IN ({marks}) "
                                  "ORDER BY step", (job_id, *metrics))  # fmt: skip
            for name, step, value in points:
                series[name].append((int(step), float(value)))
            runs.append(CompareRun(*row[:6], config=json_dict(row[6]), series=series))
        return runs
    finally:
        conn.execute("COMMIT")
