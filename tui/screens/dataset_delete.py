"""Deleting a dataset or a failed import from the Datasets tab: the confirmation and the worker-side steps."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding
from textual.markup import escape

from store.db import Store
from store.views import dataset_detail, dataset_users
from tui.widgets.confirm import ConfirmDialog


def read_dataset_users(store: Store, dataset_id: int) -> list[tuple[int, str, str]]:
    """(id, kind, status) of the jobs that use the dataset (NotFound when it is gone)."""
    with store.raw() as conn:
        dataset_detail(conn, dataset_id)
        return dataset_users(conn, dataset_id)


def delete_dataset_item(store: Store, project: str, item: Any, force: bool) -> str:
    """Delete a Datasets-tab row (a dataset, or a failed import by its name) as `tunedeck dataset delete` does;
    returns what was deleted, in words. Runs in a worker thread."""
    from core.datasets import delete_dataset  # SQLAlchemy loads on the first write, in this worker

    ref = str(item.id) if item.kind == "dataset" else item.name
    return str(delete_dataset(store, ref, project, force=force)).capitalize()


class ConfirmDatasetDelete(ConfirmDialog):
    """Asks before deleting a dataset or a failed import. Result: "delete", "force" (used by ended jobs) or None.

    A dataset a queued or running job uses cannot be deleted from here; one that ended jobs used only with `f`,
    which says they can no longer be resumed or retried.
    """

    HELP_TITLE = "Delete dataset"
    BINDINGS = [
        Binding("y", "delete", "Delete", id="confirm_dataset_delete.delete"),
        Binding("f", "force", "Delete though used", id="confirm_dataset_delete.force"),
        Binding("n,escape", "keep", "Keep", id="confirm_dataset_delete.keep"),
    ]
    dialog_id = "confirm-dataset-delete"
    dialog_title = "Delete dataset"

    def __init__(self, name: str, failed_import: bool, users: list[tuple[int, str, str]]) -> None:
        super().__init__()
        self.dataset_name = name
        self.failed_import = failed_import
        self.active = [u for u in users if u[2] in ("queued", "running")]
        self.users = users

    def question(self) -> tuple[str, str]:
        name = escape(self.dataset_name)
        if self.failed_import:
            return f"Delete the failed import of [b]{name}[/b] and its log?", "y delete · n or esc keep"
        if self.active:
            i, kind, status = self.active[0]
            return (f"Dataset [b]{name}[/b] is used by {'run' if kind == 'train' else kind} {i}, which is {status}.\n"
                    "Cancel it before deleting the dataset.", "n or esc close")
        if self.users:
            jobs = ", ".join(str(i) for i, _, _ in self.users[:6])
            return (f"Dataset [b]{name}[/b] was used by job(s) {jobs}.\nThey keep their records but cannot be "
                    "resumed or retried without it. This cannot be undone.", "f delete anyway · n or esc keep")
        return f"Delete dataset [b]{name}[/b] and its snapshot?\nThis cannot be undone.", "y delete · n or esc keep"

    def refusal(self, force: bool) -> str | None:
        if self.active:
            return "Nothing deleted: cancel the job that uses it first."
        if not force and self.users and not self.failed_import:
            return "Jobs used it: press f to delete it anyway, n to keep it."
        return None
