"""What the modal forms share: submitting through a worker thread, one submit at a time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static
from textual.worker import Worker, WorkerState

from store.errors import TunedeckError

SUBMIT_GROUP = "submit"


class SubmitInWorker:
    """Mixin for a ModalScreen form whose submit does store or engine work in a worker thread.

    The result dismisses the form; a failure stays in the form through `show_error` (a
    TunedeckError's own message, else `submit_failure` and the error), so nothing is lost.
    """

    submit_failure = "could not submit"
    _busy = False

    def show_error(self, message: str) -> None:
        """Show (or with "" hide) the form's error line, a Static with id "error"."""
        error = self.query_one("#error", Static)  # type: ignore[attr-defined]
        error.update(escape(message))
        error.display = bool(message)

    def submit_failed(self) -> None:
        """Hook run when a submit failed, before its message is shown (refresh, refocus...)."""

    def submit_work(self, work: Callable[[], Any]) -> None:
        """Run `work()` in a thread unless a submit is already running."""
        if self._busy:
            return
        self._busy = True
        self.show_error("")
        self.run_worker(work, group=SUBMIT_GROUP, thread=True, exit_on_error=False)  # type: ignore[attr-defined]

    def submit_finished(self, event: Worker.StateChanged) -> bool:
        """Handle the end of the submit worker; False when the event is about another worker."""
        if event.worker.group != SUBMIT_GROUP:
            return False
        if event.state == WorkerState.SUCCESS:
            self.dismiss(event.worker.result)  # type: ignore[attr-defined]
        elif event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            self._busy = False
            error = event.worker.error
            self.submit_failed()
            self.show_error(str(error) if isinstance(error, TunedeckError) else f"{self.submit_failure}: {error}")
        return True


@dataclass(frozen=True)
class FormField:
    key: str
    label: str
    value: str = ""
    placeholder: str = ""


class ActionDialog(SubmitInWorker, ModalScreen[Any]):
    """A few text fields and enter to run `work(values)` in a thread; errors stay in the dialog."""

    HELP_TITLE = "Artifact action"
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="action.cancel"),
        Binding("enter", "submit", "Go", show=False, id="action.submit"),
    ]
    submit_failure = "could not queue the job"

    def __init__(self, title: str, fields: list[FormField], work: Callable[[dict[str, str]], Any]) -> None:
        super().__init__()
        self.title_text = title
        self.fields = fields
        self.work = work

    def compose(self) -> ComposeResult:
        with Vertical(id="artifact-action", classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            for f in self.fields:
                yield Label(f.label)
                yield Input(value=f.value, placeholder=f.placeholder, id=f"field-{f.key}")
            yield Static("", id="error", classes="error")
            yield Static("enter queue · tab next field · esc cancel", classes="hint")

    def on_mount(self) -> None:
        self.show_error("")
        if self.fields:
            self.query_one(f"#field-{self.fields[0].key}", Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def action_submit(self) -> None:
        values = {f.key: self.query_one(f"#field-{f.key}", Input).value.strip() for f in self.fields}
        self.submit_work(partial(self.work, values))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.submit_finished(event)

    def action_cancel(self) -> None:
        self.dismiss(None)
