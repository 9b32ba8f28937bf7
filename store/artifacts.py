"""Artifact queries: look up by id or name, list a project's, walk lineage, patch metadata, delete."""

from __future__ import annotations

from typing import Any

from sqlmodel import Session, select

from store.errors import NotFound, Refused
from store.models import Artifact


def get_artifact(session: Session, ref: int | str, kinds: set[str] | None = None) -> Artifact:
    """An artifact by id (or a unique name); `kinds` restricts which kinds are accepted."""
    artifact: Artifact | None
    if isinstance(ref, int) or str(ref).isdigit():
        artifact = session.get(Artifact, int(ref))
    else:
        found = session.exec(select(Artifact).where(Artifact.name == ref)).all()
        if len(found) > 1:
            raise NotFound(f"artifact name {ref!r} is ambiguous ({len(found)} artifacts): use its id")
        artifact = found[0] if found else None
    if artifact is None:
        raise NotFound(f"no artifact {ref}" if str(ref).isdigit() else f"no artifact named {ref!r}")
    if kinds and artifact.kind not in kinds:
        raise Refused(f"artifact {artifact.id} is a {artifact.kind}; expected {' or '.join(sorted(kinds))}")
    return artifact


def list_artifacts(session: Session, project_id: int) -> list[Artifact]:
    """A project's artifacts, oldest first (parents before children)."""
    return list(session.exec(select(Artifact).where(Artifact.project_id == project_id).order_by(Artifact.id)))


def children(session: Session, artifact_id: int) -> list[Artifact]:
    """Artifacts made directly from this one."""
    return list(session.exec(select(Artifact).where(Artifact.parent_id == artifact_id).order_by(Artifact.id)))


def lineage(session: Session, artifact: Artifact) -> list[Artifact]:
    """This artifact and its ancestors, the artifact first and the root last."""
    chain = [artifact]
    seen = {artifact.id}
    while chain[-1].parent_id is not None and chain[-1].parent_id not in seen:
        parent = session.get(Artifact, chain[-1].parent_id)
        if parent is None:
            break
        seen.add(parent.id)
        chain.append(parent)
    return chain


def update_meta(session: Session, artifact_id: int, **patch: Any) -> Artifact:
    """Merge `patch` into an artifact's metadata (top-level keys replaced)."""
    artifact = session.get(Artifact, artifact_id)
    if artifact is None:
        raise NotFound(f"no artifact {artifact_id}")
    artifact.meta = {**artifact.meta, **patch}
    session.add(artifact)
    session.flush()
    return artifact


def append_eval(session: Session, artifact_id: int, result: dict[str, Any]) -> Artifact:
    """Add one evaluation result to an artifact's `evals` list."""
    artifact = session.get(Artifact, artifact_id)
    if artifact is None:
        raise NotFound(f"no artifact {artifact_id}")
    return update_meta(session, artifact_id, evals=[*artifact.meta.get("evals", []), result])


def delete_artifact(session: Session, artifact_id: int, *, force: bool = False) -> list[Artifact]:
    """Delete an artifact row (and, with `force`, every artifact derived from it); returns the deleted rows.

    Refuses when others derive from it and `force` is not given. Files are the caller's to remove.
    """
    artifact = get_artifact(session, artifact_id)
    derived = children(session, artifact_id)
    if derived and not force:
        names = ", ".join(f"{a.id} ({a.kind})" for a in derived[:5])
        raise Refused(f"artifact {artifact_id} has {len(derived)} derived artifact(s): {names}; use --force to "
                      "delete them too")
    deleted: list[Artifact] = []
    for child in derived:
        deleted += delete_artifact(session, child.id, force=True)
    session.delete(artifact)
    session.flush()
    return [*deleted, artifact]
