"""Project queries: create, list with counts, show, delete."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from sqlalchemy import func, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from store.errors import AlreadyExists, NotFound, Refused
from store.jobs import ACTIVE
from store.models import Artifact, Dataset, Job, Project, now
from store.names import check_name

RUN_KINDS = ("train",)


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


def create_project(session: Session, name: str, description: str = "") -> Project:
    """Insert a project; AlreadyExists if the name is taken."""
    name = check_name(name, "project name")
    if session.exec(select(Project.id).where(Project.name == name)).first() is not None:
        raise AlreadyExists(f"project {name!r} already exists")
    project = Project(name=name, description=description)
    session.add(project)
    try:
        session.flush()
    except IntegrityError:  # lost a race with another process
        raise AlreadyExists(f"project {name!r} already exists") from None
    return project


def get_project(session: Session, name: str) -> Project:
    """The project called `name`, or NotFound."""
    project = session.exec(select(Project).where(Project.name == name)).first()
    if project is None:
        raise NotFound(f"no project named {name!r} (see `tunedeck project list`)")
    return project


def _count(model: type, project_id_col, *where) -> object:
    return (
        select(func.count()).select_from(model).where(project_id_col == Project.id, *where).scalar_subquery()
    )


def list_projects(session: Session, name_filter: str = "") -> list[ProjectSummary]:
    """All projects (optionally whose name contains `name_filter`), newest first, with counts."""
    query = select(
        Project,
        _count(Dataset, Dataset.project_id),
        _count(Job, Job.project_id, Job.kind.in_(RUN_KINDS)),
        _count(Artifact, Artifact.project_id),
        _count(Job, Job.project_id, Job.status.in_([s.value for s in ACTIVE])),
    ).order_by(Project.updated_at.desc(), Project.id.desc())
    if name_filter:
        query = query.where(Project.name.contains(name_filter))
    out = []
    for project, datasets, runs, artifacts, active in session.exec(query):
        out.append(
            ProjectSummary(
                id=project.id,
                name=project.name,
                description=project.description,
                created_at=project.created_at,
                updated_at=project.updated_at,
                datasets=datasets,
                runs=runs,
                artifacts=artifacts,
                active_jobs=active,
            )
        )
    return out


def project_summary(session: Session, name: str) -> ProjectSummary:
    """One project's summary, or NotFound."""
    get_project(session, name)
    for summary in list_projects(session, name):
        if summary.name == name:
            return summary
    raise NotFound(f"no project named {name!r}")


def delete_project(session: Session, name: str, force: bool = False) -> None:
    """Delete a project and everything in it.

    Refuses when the project has runs, unless `force`; refuses always while one of
    its jobs is queued or running (cancel it first), since an engine may be writing to it.
    Files on disk are left to the caller.
    """
    summary = project_summary(session, name)
    if summary.active_jobs:
        raise Refused(
            f"project {name!r} has {summary.active_jobs} queued or running job(s); cancel them first"
        )
    if summary.runs and not force:
        raise Refused(f"project {name!r} has {summary.runs} run(s); pass --force to delete it with them")
    session.execute(text("DELETE FROM projects WHERE id = :id"), {"id": summary.id})
    session.expire_all()


def touch_project(session: Session, project_id: int) -> None:
    """Mark a project as changed (sorts it first)."""
    session.execute(text("UPDATE projects SET updated_at = :t WHERE id = :id"), {"t": now(), "id": project_id})
