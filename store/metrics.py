"""Metric points: upserted by (job, step, name), so a resumed run never duplicates a point."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from time import time as now
from typing import Any

UPSERT_SQL = (
    "INSERT INTO metrics (job_id, step, name, value, created_at) VALUES (:job_id, :step, :name, :value, :t) "
    "ON CONFLICT (job_id, step, name) DO UPDATE SET value = excluded.value, created_at = excluded.created_at"
)


def upsert_metrics(session: Any, job_id: int, step: int, values: Mapping[str, float]) -> int:
    """Write `values` at `step` for a job (a SQLModel session); returns how many points were written."""
    from sqlalchemy import text

    rows = [
        {"job_id": job_id, "step": int(step), "name": name, "value": float(value), "t": now()}
        for name, value in values.items()
        if value is not None
    ]
    if rows:
        session.execute(text(UPSERT_SQL), rows)
    return len(rows)


def latest_metrics(conn: sqlite3.Connection, job_id: int) -> dict[str, tuple[int, float]]:
    """The newest point of every metric of a job: {name: (step, value)}."""
    rows = conn.execute(
        "SELECT name, step, value FROM metrics m WHERE job_id = ? AND step = "
        "(SELECT max(step) FROM metrics WHERE job_id = m.job_id AND name = m.name)",
        (job_id,),
    )
    return {name: (step, value) for name, step, value in rows}


def last_step(conn: sqlite3.Connection, job_id: int) -> int | None:
    """The highest step with any metric point of a job, or None."""
    return conn.execute("SELECT max(step) FROM metrics WHERE job_id = ?", (job_id,)).fetchone()[0]


def points_since(conn: sqlite3.Connection, job_id: int, since_step: int) -> list[tuple[int, str, float]]:
    """Every (step, name, value) point of a job at or after `since_step`, in step order (what the Run
    screen polls: a point can still arrive at the last step it saw)."""
    rows = conn.execute(
        "SELECT step, name, value FROM metrics WHERE job_id = ? AND step >= ? ORDER BY step", (job_id, since_step)
    )
    return [(int(s), str(n), float(v)) for s, n, v in rows]
