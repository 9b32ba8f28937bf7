"""The project verbs both faces call that need the engine: the demo project and deleting a project."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from store.db import Store
from store.errors import TunedeckError

if TYPE_CHECKING:
    from store.models import Job


def make_demo(store: Store, log: Callable[[str], object] | None = None) -> dict[str, Any]:
    """Create whatever part of the demo project is missing (a tiny Llama built with torch, a word-reversal
    dataset queued for import); returns what it holds, with `import_job_id` while its dataset imports."""
    from engine.demo_project import ensure_demo_project

    return ensure_demo_project(store, log=log)


def demo_dataset(store: Store, job: Job) -> dict[str, Any]:
    """The demo dataset an ended import job made ({id, path}); refused when the import did not complete."""
    from store.datasets import find_dataset

    if job.status != "completed":
        raise TunedeckError(f"the demo dataset import failed (job {job.id}): {job.error}")
    with store.read() as session:
        dataset = find_dataset(session, str(job.result["dataset_id"]))
    return {"id": dataset.id, "path": dataset.path}


def delete_project(store: Store, name: str, force: bool = False) -> int:
    """Delete project `name` with its datasets and files (refused while it has runs, unless `force`); returns the
    bytes freed."""
    from engine.cleanup import delete_project as delete

    return delete(store, name, force=force)
