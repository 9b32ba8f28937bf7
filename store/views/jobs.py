"""Every job, of every project: the Jobs screen's rows in run order, and full rows for the CLI's lists."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from store.views.rows import ROW_LIMIT

if TYPE_CHECKING:
    from sqlmodel import Session

    from store.models import Job

ENDED_LIMIT = 200


@dataclass(frozen=True)
class JobRow:
    """One job of any project as the Jobs screen lists it. `place` is its 1-based place in its slot's queue
    (queued jobs only); `method`/`objective` describe a training run."""

    id: int
    project: str
    kind: str
    name: str
    status: str
    slot: str
    step: int
    total_steps: int | None
    progress: float
    error: str | None
    cancel_requested: bool
    heartbeat_at: float | None
    started_at: float | None
    finished_at: float | None
    updated_at: float
    queue_key: float
    method: str | None
    objective: str | None
    place: int | None = None


_JOB_COLUMNS = """j.id, p.name, j.kind, j.name, j.status, j.slot, j.step, j.total_steps, j.progress, j.error,
    j.cancel_requested, j.heartbeat_at, j.started_at, j.finished_at, j.updated_at, coalesce(j.queue_pos, j.id),
    json_extract(j.config, '$.run.method'), json_extract(j.config, '$.run.objective')"""


def all_jobs(conn: sqlite3.Connection, ended_limit: int = ENDED_LIMIT) -> list[JobRow]:
    """Every project's jobs in the order they run: running ones (oldest start first), then the queued ones
    slot by slot in queue order (the order runners take them), then the `ended_limit` latest that ended."""
    conn.execute("BEGIN")
    try:
        active = conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN projects p ON p.id = j.project_id "
            "WHERE j.status IN ('queued', 'running') ORDER BY j.status = 'queued', j.slot, j.started_at, "
            "coalesce(j.queue_pos, j.id), j.id").fetchall()
        ended = conn.execute(
            f"SELECT {_JOB_COLUMNS} FROM jobs j JOIN projects p ON p.id = j.project_id "
            "WHERE j.status NOT IN ('queued', 'running') ORDER BY coalesce(j.finished_at, j.updated_at) DESC, "
            "j.id DESC LIMIT ?", (ended_limit,)).fetchall()
    finally:
        conn.execute("COMMIT")
    rows: list[JobRow] = []
    places: dict[str, int] = {}
    for row in active:
        values = list(row)
        values[10] = bool(values[10])
        place = None
        if values[4] == "queued":
            place = places[values[5]] = places.get(values[5], 0) + 1
        rows.append(JobRow(*values, place=place))
    rows.extend(JobRow(*row[:10], bool(row[10]), *row[11:]) for row in ended)
    return rows


def list_jobs(session: Session, project_id: int | None = None, kind: str | None = None,
              limit: int | None = ROW_LIMIT) -> list[Job]:
    """Jobs as full rows, newest first: only `project_id`'s, only of `kind`, at most `limit` (the CLI's
    `job list`, `run list` and `project show`). Through a SQLModel session, imported here only when called."""
    from sqlmodel import select

    from store.models import Job

    query = select(Job).order_by(Job.id.desc())  # type: ignore[union-attr]
    if project_id is not None:
        query = query.where(Job.project_id == project_id)
    if kind is not None:
        query = query.where(Job.kind == kind)
    if limit is not None:
        query = query.limit(limit)
    return list(session.exec(query).all())
