"""The project screen's Datasets tab: imports in progress and failed, the detail line, import, delete and open,
and the notes when an import queued from here ends. A part of ProjectScreen (tui/screens/project.py)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual import on
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import DataTable, Static

from store.errors import NotFound
from tui.screens.import_dialog import ImportDialog, ImportErrorDialog, Queued
from tui.widgets.live_table import LiveTable
from tui.widgets.project_rows import DatasetItem

if TYPE_CHECKING:
    from store.db import Store
    from tui.screens.project import ProjectData


class DatasetsTab(Screen[None]):
    """The Datasets tab's behaviour (ProjectScreen's base; declares no keys of its own)."""

    # What ProjectScreen has (declared here for the type checker only).
    data: ProjectData | None
    project_name: str
    store: Store
    active_tab: str
    _select: dict[str, str]
    reload: Callable[[], None]
    action_show_tab: Callable[[str], None]
    _follow_job: int | None
    _watched: set[int]

    @property
    def current_dataset_item(self) -> DatasetItem | None:
        """The Datasets tab's row under the cursor: a dataset, an import in progress or a failed one."""
        if self.data is None:
            return None
        table = self.query_one("#datasets-table", LiveTable)
        key = table.current_key if table.display else None
        return self.data.datasets.get(key) if key is not None else None

    def _show_dataset_detail(self) -> None:
        detail = self.query_one("#datasets-detail", Static)
        item = self.current_dataset_item
        if item is None:
            detail.update("")
            detail.display = False
            return
        detail.display = True
        if item.kind == "import":
            state = "waiting for the data runner" if item.status == "queued" else f"{round(100 * item.progress)}% done"
            text = f"Importing [b]{escape(item.name)}[/b] (job {item.id}): {state}."
        elif item.kind == "failed":
            lines = [line.strip() for line in item.error.strip().splitlines() if line.strip()]
            first = escape(" · ".join(lines[:2])) if lines else "no error message was recorded"
            text = (f"[red]Import {item.status}[/red] (job {item.id}): {first}\n"
                    "[dim]enter shows the whole error · d deletes it[/dim]")
        else:
            keys = "enter opens the report, token lengths and a preview · d deletes"
            text = f"[b]{escape(item.name)}[/b] · {keys}"
            if item.summary:
                text = f"{escape(item.summary)}\n[dim]{keys}[/dim]"
        detail.update(text)

    @on(DataTable.RowHighlighted, "#datasets-table")
    def _dataset_highlighted(self) -> None:
        self._show_dataset_detail()

    @on(DataTable.RowSelected, "#datasets-table")
    def _dataset_selected(self) -> None:
        self.action_open_dataset()

    def _announce_imports(self, before: ProjectData | None, after: ProjectData) -> None:
        """Notify about imports that ended since the last read (only those seen running, or queued from here)."""
        follow = self._follow_job
        for job_id, item in after.imports.items():
            if item.kind == "import":
                continue
            seen = before.imports.get(job_id) if before is not None else None
            if not ((seen is not None and seen.kind == "import") or (seen is None and job_id in self._watched)):
                continue
            self._watched.discard(job_id)
            if item.kind == "failed":
                lines = [line for line in item.error.strip().splitlines() if line.strip()]
                message = escape("\n".join(lines[:6]) + ("\n…" if len(lines) > 6 else "")) or "no error recorded"
                self.notify(message, title=f"Import of {item.name} {item.status}", severity="error", timeout=12)
                if follow == job_id:
                    self._select["datasets"] = f"job-{job_id}"
            else:
                self.notify(f"Imported dataset {item.name}.", title="Import done")
                if follow == job_id:
                    key = next((k for k, d in after.datasets.items() if d.kind == "dataset" and d.name == item.name),
                               None)  # fmt: skip
                    if key is not None:
                        self._select["datasets"] = key
            if follow == job_id:
                self._follow_job = None

    def action_delete_dataset(self) -> None:
        """d on the Datasets tab: delete the highlighted dataset or failed import, after asking."""
        item = self.current_dataset_item
        if self.active_tab != "datasets" or item is None:
            return
        if item.kind == "import":
            self.notify(f"{item.name} is still importing; cancel the import (job {item.id}) before deleting it.",
                        severity="warning")
            return
        from tui.screens.dataset_delete import ConfirmDatasetDelete, delete_dataset_item, read_dataset_users

        try:
            users = read_dataset_users(self.store, item.id) if item.kind == "dataset" else []
        except NotFound:
            self.reload()
            return

        def confirmed(choice: str | None) -> None:
            if choice:
                self.run_worker(partial(delete_dataset_item, self.store, self.project_name, item, choice == "force"),
                                group="delete-dataset", thread=True, exit_on_error=False)

        self.app.push_screen(ConfirmDatasetDelete(item.name, item.kind == "failed", users), confirmed)

    def action_import_dataset(self) -> None:
        self.app.push_screen(ImportDialog(self.store, self.project_name), self._queued)

    def _queued(self, queued: Queued | None) -> None:
        if queued is None:
            return
        job_id = queued.job_id
        self.notify(f"Import queued as job {job_id}.")
        self._watched.add(job_id)
        self._follow_job = job_id
        self._select["datasets"] = f"job-{job_id}"
        self.action_show_tab("datasets")
        self.reload()

    def action_open_dataset(self) -> None:
        if self.active_tab != "datasets":
            return
        item = self.current_dataset_item
        if item is None:
            self.notify("No dataset to open. Press i to import one.", severity="warning")
        elif item.kind == "dataset":
            from tui.screens.datasets import DatasetScreen

            self.app.push_screen(DatasetScreen(item.id))
        elif item.kind == "failed":
            self.app.push_screen(ImportErrorDialog(item.name, item.id, item.error))
        else:
            self.notify(f"{item.name} is still importing; it opens once the import is done.")
