"""Registering files and folders as artifacts: size, checksum, lineage."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from sqlmodel import Session

from store.models import Artifact

CHUNK = 1 << 20


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
