"""Plain-SQL reads the GPU panel and the memory estimator's calibration need (standard library only)."""

from __future__ import annotations

import sqlite3
from typing import Any

from store.views import json_dict


def running_job_pids(conn: sqlite3.Connection) -> dict[int, tuple[int, str, str]]:
    """{pid: (job id, kind, name)} of every running job that has recorded its engine's pid."""
    rows = conn.execute("SELECT pid, id, kind, name FROM jobs WHERE status = 'running' AND pid IS NOT NULL")
    return {int(pid): (int(job_id), str(kind), str(name or "")) for pid, job_id, kind, name in rows}


def calibration_rows(conn: sqlite3.Connection, limit: int = 1000) -> list[tuple[int, str, str, dict[str, Any]]]:
    """(job id, name, status, result) of the newest jobs whose result holds a GPU memory estimate,
    with or without a measured peak."""
    rows = conn.execute(
        "SELECT id, name, status, result FROM jobs WHERE json_extract(result, '$.gpu_estimate') IS NOT NULL "
        "ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [(int(job_id), str(name or ""), str(status), json_dict(result)) for job_id, name, status, result in rows]
