"""Small modal dialogs: the new-project form and the delete confirmation."""

from __future__ import annotations

from functools import partial

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static
from textual.worker import Worker

from store.db import Store
from store.views import ProjectSummary
from tui.widgets.confirm import ConfirmDialog
from tui.widgets.submit_form import SubmitInWorker


def _create(store: Store, name: str, description: str) -> str:
    from store.projects import create_project  # SQLAlchemy loads on the first write, in this worker

    with store.write() as session:
        return create_project(session, name, description).name


class NewProjectDialog(SubmitInWorker, ModalScreen[str | None]):
    """Name and description; enter creates the project, esc cancels. Errors stay in the form."""

    HELP_TITLE = "New project"
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="new_project.cancel"),
        Binding("enter", "submit", "Create", show=False, id="new_project.submit"),
    ]

    submit_failure = "could not create the project"

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store

    def compose(self) -> ComposeResult:
        with Vertical(id="new-project", classes="dialog"):
            yield Static("New project", classes="dialog-title")
            yield Label("Name")
            yield Input(placeholder="letters, digits, - and _ work well", id="name", max_length=64)
            yield Label("Description (optional)")
            yield Input(placeholder="what this project is for", id="description")
            yield Static("", id="error", classes="error")
            yield Static("enter create · tab next field · esc cancel", classes="hint")

    def on_mount(self) -> None:
        self.show_error("")
        self.query_one("#name", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    @on(Input.Changed)
    def _changed(self) -> None:
        self.show_error("")

    def action_submit(self) -> None:
        name = self.query_one("#name", Input).value
        description = self.query_one("#description", Input).value.strip()
        self.submit_work(partial(_create, self.store, name, description))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.submit_finished(event)

    def submit_failed(self) -> None:
        self.query_one("#name", Input).focus()

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmDeleteDialog(ConfirmDialog):
    """Asks before deleting a project. Result: "delete", "force" (with its runs) or None.

    A project with runs is only deleted with `f`, which says that its runs go too;
    one with queued or running jobs cannot be deleted from here at all.
    """

    HELP_TITLE = "Delete project"
    BINDINGS = [
        Binding("y", "delete", "Delete", id="confirm_delete.delete"),
        Binding("f", "force", "Delete with runs", id="confirm_delete.force"),
        Binding("n,escape", "keep", "Keep", id="confirm_delete.keep"),
    ]
    dialog_id = "confirm-delete"
    dialog_title = "Delete project"

    def __init__(self, project: ProjectSummary) -> None:
        super().__init__()
        self.project = project

    def question(self) -> tuple[str, str]:
        p = self.project
        name = escape(p.name)
        contents = f"{p.datasets} dataset(s), {p.runs} run(s) and {p.artifacts} artifact(s)"
        if p.active_jobs:
            return (f"Project [b]{name}[/b] has {p.active_jobs} queued or running job(s).\n"
                    "Cancel them before deleting it.", "n or esc close")
        if p.runs:
            return (f"Project [b]{name}[/b] has {contents}.\nDeleting it also deletes its {p.runs} run(s) and their "
                    "records. This cannot be undone.", "f delete with runs · n or esc keep")
        return f"Delete project [b]{name}[/b] with {contents}?\nThis cannot be undone.", "y delete · n or esc keep"

    def refusal(self, force: bool) -> str | None:
        p = self.project
        if p.active_jobs:
            return "Nothing deleted: cancel its queued and running jobs first."
        if not force and p.runs:
            return f"It has {p.runs} run(s): press f to delete it together with them, n to keep it."
        return None

    def result(self, force: bool) -> str:
        return "force" if force and self.project.runs else "delete"
