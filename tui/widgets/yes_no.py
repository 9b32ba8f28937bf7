"""The yes/no dialog asked before an action on a job that cannot be taken back (cancel, delete, retry a run)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class ConfirmDialog(ModalScreen[bool]):
    """Asks before an action that cannot be taken back: y or enter goes ahead, n or esc does not."""

    HELP_TITLE = "Confirm"
    BINDINGS = [
        Binding("y,enter", "answer(True)", "Yes", id="confirm.answer_yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.answer_no"),
        Binding("q", "app.quit", "Quit", show=False, id="app.quit"),  # a modal screen hides the app's keys
    ]

    def __init__(self, title: str, body: str, yes: str = "y go ahead") -> None:
        super().__init__()
        self.title_text = title
        self.body = body
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-run", classes="dialog"):
            yield Static(self.title_text, classes="dialog-title")
            yield Static(self.body, id="confirm-body")
            yield Static(f"{self.yes} · n or esc keep it as it is", classes="hint")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
