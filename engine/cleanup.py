"""Deleting training runs, datasets and projects and pruning checkpoints: rows and folders together. Light: no torch.

SQLite hands out the id of a deleted newest row again, and a training job resumes from whatever checkpoint its
folder holds. So a run's folder never stays under its id once its row is gone: it is renamed into the home's
trash before the delete commits (and renamed back if the commit fails), then emptied. A crash in between leaves
only trash, which the next clean-up empties.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from store.db import Store
from store.errors import Refused
from store.home import job_dir

if TYPE_CHECKING:
    from sqlmodel import Session

TRASH = "trash"


@dataclass
class RunDeleted:
    """What `delete_run` removed: the run, the artifacts it made and those derived from them, and the bytes freed.
    `kept` lists artifact files outside the home (the user named those paths; they are left alone)."""

    job_id: int
    artifacts: list[tuple[int, str]] = field(default_factory=list)  # (id, kind)
    kept: list[str] = field(default_factory=list)
    freed_bytes: int = 0


def disk_usage(path: Path) -> int:
    """Bytes in the files under `path` (0 when it is missing); links are not followed."""
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for item in path.rglob("*"):
        with contextlib.suppress(OSError):
            if item.is_file() and not item.is_symlink():
                total += item.stat().st_size
    return total


def _retire(home: Path, paths: Iterable[Path]) -> list[tuple[Path, Path]]:
    """Rename each existing path into the trash; returns (original, trashed) pairs."""
    trash = home / TRASH
    trash.mkdir(mode=0o700, exist_ok=True)
    moved: list[tuple[Path, Path]] = []
    try:
        for path in paths:
            if path.exists() or path.is_symlink():
                target = trash / f"{uuid.uuid4().hex[:12]}-{path.name}"
                path.rename(target)
                moved.append((path, target))
    except OSError:
        _restore(moved)
        raise
    return moved


def _restore(moved: list[tuple[Path, Path]]) -> None:
    for original, target in reversed(moved):
        with contextlib.suppress(OSError):
            target.rename(original)


def empty_trash(home: Path) -> None:
    """Remove what earlier deletes left in the trash (after a crash, or files that would not go)."""
    trash = home / TRASH
    if not trash.is_dir():
        return
    for item in trash.iterdir():
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item, ignore_errors=True)
        else:
            item.unlink(missing_ok=True)


def _inside(home: Path, path: Path) -> bool:
    return home in path.resolve().parents


def _still_used(session: Session, path: Path) -> bool:
    """Whether an artifact row that remains points at `path` or into it (two projects can register one model)."""
    from sqlalchemy import text

    found = session.execute(text("SELECT 1 FROM artifacts WHERE path = :p OR substr(path, 1, :n) = :prefix LIMIT 1"),
                            {"p": str(path), "n": len(str(path)) + 1, "prefix": f"{path}/"})
    return found.first() is not None


class Removal:
    """Inside `deleting`: the write session, and the files to remove with the rows it deletes."""

    def __init__(self, session: Session, home: Path) -> None:
        self.session = session
        self.home = home
        self.freed_bytes = 0
        self._paths: list[tuple[Path, bool]] = []

    def remove(self, path: Path, *, shared: bool = True) -> bool:
        """Remove `path` with the rows when it is under the home (False: outside it, the user's; left alone).
        With `shared`, a path another remaining artifact still points at (or into) stays."""
        if not _inside(self.home, path):
            return False
        self._paths.append((path, shared))
        return True

    def _final(self) -> list[Path]:
        """The paths to move into the trash: not still used, and not inside another one that goes."""
        paths = [p for p, shared in self._paths if not (shared and _still_used(self.session, p))]
        resolved = {p.resolve() for p in paths}
        return [p for p in paths if not any(parent in resolved for parent in p.resolve().parents)]


@contextlib.contextmanager
def deleting(store: Store) -> Iterator[Removal]:
    """A write transaction whose rows and files go together: the paths given to `Removal.remove` are moved into
    the trash just before the commit (and moved back if it fails), then removed once it committed."""
    home = store.home.resolve()
    moved: list[tuple[Path, Path]] = []
    try:
        with store.write() as session:
            removal = Removal(session, home)
            yield removal
            session.flush()
            paths = removal._final()
            removal.freed_bytes = sum(disk_usage(p) for p in paths if p.exists())
            moved = _retire(home, paths)
    except BaseException:
        _restore(moved)
        raise
    empty_trash(home)


def delete_run(store: Store, job_id: int, *, force: bool = False) -> RunDeleted:
    """Delete training run `job_id`: its row, metrics, folder (log, checkpoints, output) and, with `force`, the
    artifacts it made and every artifact derived from them. Refused while the run is queued or running, and
    without `force` when it made artifacts."""
    from sqlmodel import select

    from store.artifacts import delete_artifact
    from store.jobs import ACTIVE, get_job, reap_stale
    from store.models import Artifact

    report = RunDeleted(job_id)
    with deleting(store) as removal:
        session = removal.session
        reap_stale(session)
        job = get_job(session, job_id)
        if job.kind != "train":
            raise Refused(f"job {job_id} is a {job.kind} job, not a training run")
        if job.status in ACTIVE:
            raise Refused(f"run {job_id} is {job.status}; cancel it first (tunedeck run cancel {job_id})")
        made = session.exec(select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.id)).all()
        if made and not force:
            names = ", ".join(f"{a.id} ({a.kind} {a.name})" for a in made)
            raise Refused(f"run {job_id} made artifact(s) {names}; pass --force to delete them too, with "
                          "every artifact derived from them")
        for artifact in made:
            if session.get(Artifact, artifact.id) is None:
                continue  # already deleted as derived from an earlier one
            for gone in delete_artifact(session, int(artifact.id), force=True):  # type: ignore[arg-type]
                report.artifacts.append((int(gone.id), gone.kind))  # type: ignore[arg-type]
                if not removal.remove(Path(gone.path)):
                    report.kept.append(gone.path)
        session.delete(job)
        removal.remove(job_dir(removal.home, job_id), shared=False)  # never left under a reusable id
    report.freed_bytes = removal.freed_bytes
    return report


@dataclass
class DatasetDeleted:
    """What `delete_dataset` removed: the dataset (None when only failed imports of that name went), the failed
    import jobs of its name, and the bytes freed."""

    name: str
    dataset_id: int | None = None
    import_jobs: list[int] = field(default_factory=list)
    freed_bytes: int = 0

    def __str__(self) -> str:
        what = f"dataset {self.name} (id {self.dataset_id})" if self.dataset_id is not None else \
            f"the failed import(s) of {self.name} (job {', '.join(map(str, self.import_jobs))})"  # fmt: skip
        return f"deleted {what} ({self.freed_bytes / 1e6:,.1f} MB freed)"


def delete_dataset(store: Store, ref: str, project: str | None = None, *, force: bool = False) -> DatasetDeleted:
    """Delete dataset `ref` (a name, within `project` when given, or an id) with its snapshot, and the failed imports
    of its name; a name with no dataset but failed imports deletes those (their job rows and logs). Refused while a
    queued or running job uses the dataset, and without `force` when ended runs or evaluations used it (they keep
    their records, but cannot be resumed or retried without it)."""
    from sqlalchemy import text
    from sqlmodel import select

    from store.datasets import find_dataset
    from store.errors import NotFound
    from store.jobs import ACTIVE, reap_stale
    from store.models import Dataset, Job, Project
    from store.views import DATASET_USERS_SQL, IMPORT_FAILED, IMPORT_KIND

    with deleting(store) as removal:
        session = removal.session
        reap_stale(session)
        try:
            dataset: Dataset | None = find_dataset(session, ref, project)
        except NotFound:
            dataset = None
            if ref.isdigit():
                raise
            query = select(Job).join(Project).where(Job.kind == IMPORT_KIND, Job.name == ref)
            if project:
                query = query.where(Project.name == project)
            imports = session.exec(query).all()
            if not imports:
                raise
            project_ids = {j.project_id for j in imports}
            if len(project_ids) > 1:
                raise Refused(f"several projects have imports named {ref!r}; give --project") from None
            project_id = project_ids.pop()
        else:
            project_id = dataset.project_id
        report = DatasetDeleted(dataset.name if dataset else ref, dataset.id if dataset else None)
        if dataset is not None:
            users = [(int(i), str(k), str(s)) for i, k, s in session.execute(text(DATASET_USERS_SQL.replace("?", ":d")),
                                                                                {"d": dataset.id})]  # fmt: skip
            active = [u for u in users if u[2] in ACTIVE]
            if active:
                i, kind, status = active[0]
                what = "run" if kind == "train" else f"{kind} job"
                hint = f"tunedeck run cancel {i}" if kind == "train" else f"tunedeck job cancel {i}"
                raise Refused(f"dataset {dataset.name!r} is used by {what} {i}, which is {status}; cancel it first "
                              f"({hint})")
            if users and not force:
                listed = ", ".join(f"{i} ({'run' if k == 'train' else k}, {s})" for i, k, s in users[:6])
                raise Refused(f"dataset {dataset.name!r} was used by job(s) {listed}; they keep their records but "
                              "cannot be resumed or retried without it: pass --force to delete it anyway")
            session.delete(dataset)
            folder = removal.home / "datasets" / str(dataset.id)
            removal.remove(folder, shared=False)  # never left under an id SQLite may hand out again
            if dataset.path and Path(dataset.path) != folder:
                removal.remove(Path(dataset.path), shared=False)
        status = Job.status.in_(IMPORT_FAILED)  # type: ignore[attr-defined]
        failed = session.exec(select(Job).where(Job.kind == IMPORT_KIND, Job.project_id == project_id,
                                                Job.name == report.name, status)).all()
        if dataset is None and not failed:
            if any(j.status in ACTIVE for j in imports):
                raise Refused(f"the import of {ref!r} is still queued or running; cancel it first")
            raise NotFound(f"no dataset or failed import named {ref!r}")
        for job in failed:
            report.import_jobs.append(int(job.id))  # type: ignore[arg-type]
            session.delete(job)
            removal.remove(job_dir(removal.home, int(job.id)), shared=False)  # type: ignore[arg-type]
    report.freed_bytes = removal.freed_bytes
    return report


def delete_project(store: Store, name: str, *, force: bool = False) -> int:
    """Delete project `name` with its datasets, runs, metrics and artifacts (rules: `store.projects.delete_project`)
    and the files tunedeck keeps for them under the home; files outside it are the user's. Returns bytes freed."""
    from sqlmodel import select

    from store.models import Artifact, Dataset, Job
    from store.projects import delete_project as delete_rows
    from store.projects import get_project

    with deleting(store) as removal:
        session = removal.session
        project = get_project(session, name)
        jobs = session.exec(select(Job.id).where(Job.project_id == project.id)).all()
        datasets = session.exec(select(Dataset.id).where(Dataset.project_id == project.id)).all()
        artifacts = session.exec(select(Artifact.path).where(Artifact.project_id == project.id)).all()
        delete_rows(session, name, force=force)
        for sub, ids in (("jobs", jobs), ("datasets", datasets)):
            for ident in ids:
                removal.remove(removal.home / sub / str(ident), shared=False)
        for path in artifacts:
            removal.remove(Path(path))
    return removal.freed_bytes


def prune_checkpoints(store: Store, project: str | None = None) -> list[tuple[int, int, int]]:
    """Remove the checkpoints of completed training runs (of `project`, else of every project): a completed run
    is never resumed, and its trained weights are its output. Returns (job id, checkpoints, bytes freed) per run
    that had any."""
    from sqlmodel import select

    from store.models import Job, JobStatus
    from store.projects import get_project

    home = store.home.resolve()
    with store.read() as session:
        query = select(Job.id).where(Job.kind == "train", Job.status == JobStatus.completed)
        if project is not None:
            query = query.where(Job.project_id == get_project(session, project).id)
        job_ids = sorted(int(i) for i in session.exec(query).all())  # type: ignore[arg-type]
    pruned = []
    for job_id in job_ids:
        checkpoints = job_dir(home, job_id) / "checkpoints"
        found = sorted(checkpoints.glob("checkpoint-*")) if checkpoints.is_dir() else []
        if not found:
            continue
        freed = sum(disk_usage(p) for p in found)
        _retire(home, found)
        pruned.append((job_id, len(found), freed))
    empty_trash(home)
    return pruned
