"""Registering files and folders as artifacts: size, checksum, lineage."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from store.models import Artifact

if TYPE_CHECKING:
    from store.db import Store

CHUNK = 1 << 20

# Kinds of artifact: model (a full HF model folder), merged (a merge's output), adapter (a LoRA), data, gguf, and
# reward-model (a whole sequence-classification model with one output, the score; from an objective: reward run).
REWARD_MODEL = "reward-model"


def sha256_file(path: Path) -> str:
    """Hex sha256 of one file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def measure(path: Path) -> tuple[int, str]:
    """(size in bytes, sha256) of a file, or of a folder as the hash of its files' names and hashes."""
    if path.is_file():
        return path.stat().st_size, sha256_file(path)
    if not path.is_dir():
        raise FileNotFoundError(2, "no such file or directory", str(path))
    digest = hashlib.sha256()
    size = 0
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        size += file.stat().st_size
        digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
    return size, digest.hexdigest()


def register_artifact(
    session: Session,
    project_id: int,
    kind: str,
    path: Path,
    *,
    name: str = "",
    job_id: int | None = None,
    parent_id: int | None = None,
    meta: dict[str, Any] | None = None,
) -> Artifact:
    """Insert an artifact row for `path` with its size and checksum (computed before the insert)."""
    size, sha = measure(path)
    artifact = Artifact(
        project_id=project_id,
        kind=kind,
        name=name or path.name,
        path=str(path),
        size=size,
        sha256=sha,
        job_id=job_id,
        parent_id=parent_id,
        meta=meta or {},
    )
    session.add(artifact)
    session.flush()
    return artifact


def delete_with_files(store: Store, artifact_id: int, *, force: bool = False) -> list[tuple[int, str, str, bool]]:
    """Delete an artifact (with `force`, also what derives from it) and its files when they are under the home
    (`engine.cleanup.deleting`: rows and files go together; a path another artifact still uses stays).

    Returns (id, kind, path, under the home) per deleted artifact. Files outside the home were named by
    the user and are left alone.
    """
    from engine.cleanup import deleting
    from store.artifacts import delete_artifact

    out = []
    with deleting(store) as removal:
        for a in delete_artifact(removal.session, artifact_id, force=force):
            out.append((int(a.id), a.kind, a.path, removal.remove(Path(a.path))))  # type: ignore[arg-type]
    return out
