"""Artifacts: one artifact within its lineage tree, the jobs working on it, and a lineage's display order."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from store.errors import NotFound
from store.views.rows import named_rows


@dataclass
class ArtifactFamily:
    """One artifact, its project's name, and every artifact of its lineage tree (root first)."""

    id: int
    project: str
    nodes: dict[int, Any]  # id -> ArtifactNode
    root: int
    active_jobs: int  # queued or running jobs that read from this artifact

    @property
    def artifact(self) -> Any:
        return self.nodes[self.id]

    def children(self, node_id: int) -> list[Any]:
        return sorted((n for n in self.nodes.values() if n.parent_id == node_id), key=lambda n: n.id)


def artifact_family(conn: sqlite3.Connection, artifact_id: int) -> ArtifactFamily:
    """The artifact with id `artifact_id` within its lineage tree, or NotFound."""
    conn.execute("BEGIN")
    try:
        row = conn.execute("SELECT a.project_id, p.name FROM artifacts a JOIN projects p ON p.id = a.project_id "
                           "WHERE a.id = ?", (artifact_id,)).fetchone()
        if row is None:
            raise NotFound(f"no artifact {artifact_id}")
        nodes = {n.id: n for n in named_rows(
            conn, "ArtifactNode", "SELECT id, parent_id, job_id, kind, name, path, size, sha256, meta, created_at "
            "FROM artifacts WHERE project_id = ?", (row[0],))}
        active = conn.execute(
            "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running') AND project_id = ? "
            "AND json_extract(config, '$.artifact_id') = ?", (row[0], artifact_id)).fetchone()[0]
    finally:
        conn.execute("COMMIT")
    root = artifact_id
    seen = {root}
    while nodes[root].parent_id in nodes and nodes[root].parent_id not in seen:
        root = nodes[root].parent_id
        seen.add(root)
    return ArtifactFamily(id=artifact_id, project=row[1], nodes=nodes, root=root, active_jobs=active)


def artifact_jobs(conn: sqlite3.Connection, artifact_id: int) -> list[Any]:
    """The queued and running jobs that work on artifact `artifact_id` (a merge, conversion, quantization, eval
    or push of it), oldest first: ArtifactJob(id, kind, status, step, total_steps, progress)."""
    return named_rows(conn, "ArtifactJob", "SELECT id, kind, status, step, total_steps, progress FROM jobs "
                 "WHERE status IN ('queued', 'running') AND json_extract(config, '$.artifact_id') = ? ORDER BY id",
                 (artifact_id,))  # fmt: skip


def lineage_order(artifacts: list[Any]) -> list[tuple[Any, int]]:
    """Artifacts as a lineage tree in display order: each one followed by what was made from it (oldest
    first), with its depth. A parent outside the list (another project, deleted) makes a root."""
    by_id = {a.id: a for a in artifacts}
    kids: dict[int | None, list[Any]] = {}
    for a in sorted(artifacts, key=lambda a: a.id):
        kids.setdefault(a.parent_id if a.parent_id in by_id else None, []).append(a)
    out: list[tuple[Any, int]] = []
    stack = [(a, 0) for a in reversed(kids.get(None, []))]
    while stack:  # depth-first without recursion: lineage chains can be long
        a, depth = stack.pop()
        out.append((a, depth))
        stack.extend((child, depth + 1) for child in reversed(kids.get(a.id, [])))
    return out
