"""Projects: the projects screen's summaries (`project list`) and one project's contents for its tabs."""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from typing import Any

from store.errors import NotFound
from store.views.rows import ROW_LIMIT, named_rows


@dataclass(frozen=True)
class ProjectSummary:
    """A project with the counts the projects screen and `project list` show."""

    id: int
    name: str
    description: str
    created_at: float
    updated_at: float
    datasets: int
    runs: int
    artifacts: int
    active_jobs: int

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


PROJECT_SUMMARIES_SQL = """
SELECT p.id, p.name, p.description, p.created_at, p.updated_at,
    (SELECT count(*) FROM datasets d WHERE d.project_id = p.id),
    (SELECT count(*) FROM jobs j WHERE j.project_id = p.id AND j.kind = 'train'),
    (SELECT count(*) FROM artifacts a WHERE a.project_id = p.id),
    (SELECT count(*) FROM jobs j WHERE j.project_id = p.id AND j.status IN ('queued', 'running'))
FROM projects p
WHERE (:name_filter = '' OR instr(p.name, :name_filter) > 0)
ORDER BY p.updated_at DESC, p.id DESC
"""


def summaries_from_rows(rows: Any) -> list[ProjectSummary]:
    """ProjectSummary objects from rows of PROJECT_SUMMARIES_SQL."""
    return [ProjectSummary(*row) for row in rows]


def project_summaries(conn: sqlite3.Connection, name_filter: str = "") -> list[ProjectSummary]:
    """Every project (whose name contains `name_filter`), most recently changed first, with counts."""
    return summaries_from_rows(conn.execute(PROJECT_SUMMARIES_SQL, {"name_filter": name_filter}))


def project_summary(conn: sqlite3.Connection, name: str) -> ProjectSummary:
    """One project's summary, or NotFound."""
    for summary in project_summaries(conn, name):
        if summary.name == name:
            return summary
    raise NotFound(f"no project named {name!r} (see `tunedeck project list`)")


@dataclass
class ProjectContents:
    """One project's rows for its tabs (newest first, at most ROW_LIMIT each)."""

    id: int
    name: str
    description: str
    datasets: list[Any]
    jobs: list[Any]
    artifacts: list[Any]
    chats: list[Any]


def project_contents(conn: sqlite3.Connection, name: str) -> ProjectContents:
    """Everything the project screen shows, in one read transaction."""
    conn.execute("BEGIN")
    try:
        row = conn.execute("SELECT id, name, description FROM projects WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"no project named {name!r}")
        pid = row[0]
        lim = (pid, ROW_LIMIT)
        return ProjectContents(
            id=pid, name=row[1], description=row[2],
            datasets=named_rows(conn, "DatasetRow",
                           "SELECT id, name, format, num_train, num_val, lint, created_at FROM datasets "
                           "WHERE project_id = ? ORDER BY id DESC LIMIT ?", lim),
            jobs=named_rows(conn, "JobRow",
                       "SELECT id, kind, name, status, step, total_steps, progress, error, updated_at FROM jobs "
                       "WHERE project_id = ? ORDER BY id DESC LIMIT ?", lim),
            artifacts=named_rows(conn, "ArtifactRow",
                            "SELECT id, parent_id, kind, name, size, path, meta, created_at FROM artifacts "
                            "WHERE project_id = ? ORDER BY id DESC LIMIT ?", lim),
            chats=named_rows(conn, "ChatRow",
                        "SELECT id, title, model_path, updated_at FROM chat_sessions "
                        "WHERE project_id = ? ORDER BY updated_at DESC LIMIT ?", lim),
        )
    finally:
        conn.execute("COMMIT")
