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
from tui.screens.forms import SubmitInWorker


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


class ConfirmDeleteDialog(ModalScreen[str | None]):
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

    def __init__(self, project: ProjectSummary) -> None:
        super().__init__()
        self.project = project

    def compose(self) -> ComposeResult:
        p = self.project
        name = escape(p.name)
        contents = f"{p.datasets} dataset(s), {p.runs} run(s) and {p.artifacts} artifact(s)"
        if p.active_jobs:
            body = (
                f"Project [b]{name}[/b] has {p.active_jobs} queued or running job(s).\nCancel them before deleting it."
            )
            hint = "n or esc close"
        elif p.runs:
            body = (
                f"Project [b]{name}[/b] has {contents}.\n"
                f"Deleting it also deletes its {p.runs} run(s) and their records. This cannot be undone."
            )
            hint = "f delete with runs · n or esc keep"
        else:
            body = f"Delete project [b]{name}[/b] with {contents}?\nThis cannot be undone."
            hint = "y delete · n or esc keep"
        with Vertical(id="confirm-delete", classes="dialog"):
            yield Static("Delete project", classes="dialog-title")
            yield Static(body, id="confirm-body")
            yield Static("", id="confirm-note", classes="error")
            yield Static(hint, classes="hint")

    def on_mount(self) -> None:
        self.query_one("#confirm-note").display = False

    def _note(self, message: str) -> None:
        note = self.query_one("#confirm-note", Static)
        note.update(escape(message))
        note.display = True

    def action_delete(self) -> None:
        p = self.project
        if p.active_jobs:
            self._note("Nothing deleted: cancel its queued and running jobs first.")
        elif p.runs:
            self._note(f"It has {p.runs} run(s): press f to delete it together with them, n to keep it.")
        else:
            self.dismiss("delete")

    def action_force(self) -> None:
        if self.project.active_jobs:
            self._note("Nothing deleted: cancel its queued and running jobs first.")
        else:
            self.dismiss("force" if self.project.runs else "delete")

    def action_keep(self) -> None:
        self.dismiss(None)
