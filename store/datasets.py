"""Dataset queries."""

from __future__ import annotations

from sqlmodel import Session, select

from store.errors import NotFound, Refused
from store.models import Dataset, Project


def list_datasets(session: Session, project_id: int) -> list[Dataset]:
    """A project's datasets, newest first."""
    return list(session.exec(select(Dataset).where(Dataset.project_id == project_id).order_by(Dataset.id.desc())))


def find_dataset(session: Session, ref: str, project: str | None = None) -> Dataset:
    """A dataset by id, or by name (within `project` when given); NotFound or Refused if ambiguous."""
    if ref.isdigit():
        dataset = session.get(Dataset, int(ref))
        if dataset is None:
            raise NotFound(f"no dataset with id {ref}")
        return dataset
    query = select(Dataset, Project.name).join(Project).where(Dataset.name == ref)
    if project:
        query = query.where(Project.name == project)
    found = session.exec(query).all()
    if not found:
        where = f" in project {project!r}" if project else ""
        raise NotFound(f"no dataset named {ref!r}{where} (see `tunedeck dataset list PROJECT`)")
    if len(found) > 1:
        places = ", ".join(f"id {d.id} in {p!r}" for d, p in found)
        raise Refused(f"several datasets are named {ref!r} ({places}); give an id or --project")
    return found[0][0]


def dataset_name_taken(session: Session, project_id: int, name: str) -> bool:
    """Whether the project already has a dataset called `name`."""
    query = select(Dataset.id).where(Dataset.project_id == project_id, Dataset.name == name)
    return session.exec(query).first() is not None
