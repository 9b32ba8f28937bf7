"""Project queries: create, list with counts, show, delete."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from store.errors import AlreadyExists, NotFound, Refused, TunedeckError
from store.models import Project, now
from store.names import check_name
from store.views import PROJECT_SUMMARIES_SQL, ProjectSummary, summaries_from_rows

__all__ = ["GUIDE_VERDICTS", "ProjectSummary", "check_guide", "create_project", "delete_project", "get_project",
           "list_projects", "rename_project", "set_project_guide"]

GUIDE_VERDICTS = ("fine-tune", "rag", "prompting")
"""What the decision guide can conclude: train the model, give it retrieved documents, or prompt it better."""


def create_project(session: Session, name: str, description: str = "", guide: dict[str, Any] | None = None
                   ) -> Project:  # fmt: skip
    """Insert a project (with the decision guide's outcome, if given); AlreadyExists if the name is taken."""
    name = _free_name(session, name)
    return _save(session, Project(name=name, description=description, guide=check_guide(guide or {})))


def check_guide(guide: dict[str, Any]) -> dict[str, Any]:
    """`guide` ({} for a skipped guide) if its verdict is one of GUIDE_VERDICTS, else an error saying so."""
    if not guide:
        return {}
    verdict = guide.get("verdict")
    if verdict not in GUIDE_VERDICTS:
        raise TunedeckError(f"guide verdict {verdict!r}: expected one of {', '.join(GUIDE_VERDICTS)}")
    for key in ("answers", "checklist"):
        if not isinstance(guide.get(key, {}), dict):
            raise TunedeckError(f"guide {key}: expected a mapping of question to answer, got {guide[key]!r}")
    return dict(guide)


def set_project_guide(session: Session, name: str, guide: dict[str, Any]) -> Project:
    """Record the decision guide's outcome on project `name` ({} clears it)."""
    project = get_project(session, name)
    project.guide, project.updated_at = check_guide(guide), now()
    return _save(session, project)


def rename_project(session: Session, name: str, new_name: str) -> Project:
    """Give a project a new name; NotFound, AlreadyExists or a name refusal otherwise. Everything in it refers
    to it by id, so runs, datasets and jobs (running ones too) are untouched."""
    new_name = check_name(new_name, "project name")
    project = get_project(session, name)
    if new_name == project.name:
        return project
    project.name, project.updated_at = _free_name(session, new_name), now()
    return _save(session, project)


def _free_name(session: Session, name: str) -> str:
    """`name` checked and not taken by another project, else a refusal naming it."""
    name = check_name(name, "project name")
    if session.exec(select(Project.id).where(Project.name == name)).first() is not None:
        raise AlreadyExists(f"project {name!r} already exists")
    return name


def _save(session: Session, project: Project) -> Project:
    """Write `project` now; AlreadyExists when another process took its name meanwhile (the unique index)."""
    session.add(project)
    try:
        session.flush()
    except IntegrityError:
        raise AlreadyExists(f"project {project.name!r} already exists") from None
    return project


def get_project(session: Session, name: str) -> Project:
    """The project called `name`, or NotFound."""
    project = session.exec(select(Project).where(Project.name == name)).first()
    if project is None:
        raise NotFound(f"no project named {name!r} (see `tunedeck project list`)")
    return project


def list_projects(session: Session, name_filter: str = "") -> list[ProjectSummary]:
    """All projects (optionally whose name contains `name_filter`), newest first, with counts."""
    return summaries_from_rows(session.execute(text(PROJECT_SUMMARIES_SQL), {"name_filter": name_filter}))


def project_summary(session: Session, name: str) -> ProjectSummary:
    """One project's summary, or NotFound."""
    for summary in list_projects(session, name):
        if summary.name == name:
            return summary
    raise NotFound(f"no project named {name!r} (see `tunedeck project list`)")


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
