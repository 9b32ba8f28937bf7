"""The y / f / n confirmation dialog that deleting a project or a dataset asks through."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Static


class ConfirmDialog(ModalScreen[str | None]):
    """Asks before a deletion. Result: "delete", "force" or None (kept).

    A subclass names its dialog (``dialog_id``, ``dialog_title``), says what it asks (:meth:`question`) and, per key,
    why it cannot go ahead yet (:meth:`refusal`: shown under the question, the dialog stays open). Its bindings
    map y, f and n/esc to the ``delete``, ``force`` and ``keep`` actions.
    """

    dialog_id = "confirm"
    dialog_title = "Delete"

    def question(self) -> tuple[str, str]:
        """The question (markup, user text escaped) and the key hint under it."""
        raise NotImplementedError

    def refusal(self, force: bool) -> str | None:
        """Why y (``force`` false) or f (true) cannot delete now; None lets it."""
        return None

    def result(self, force: bool) -> str:
        """What the dialog answers when the key was allowed."""
        return "force" if force else "delete"

    def compose(self) -> ComposeResult:
        body, hint = self.question()
        with Vertical(id=self.dialog_id, classes="dialog"):
            yield Static(self.dialog_title, classes="dialog-title")
            yield Static(body, id="confirm-body")
            yield Static("", id="confirm-note", classes="error")
            yield Static(hint, classes="hint")

    def on_mount(self) -> None:
        self.query_one("#confirm-note").display = False

    def _answer(self, force: bool) -> None:
        why = self.refusal(force)
        if why is None:
            self.dismiss(self.result(force))
            return
        note = self.query_one("#confirm-note", Static)
        note.update(escape(why))
        note.display = True

    def action_delete(self) -> None:
        self._answer(False)

    def action_force(self) -> None:
        self._answer(True)

    def action_keep(self) -> None:
        self.dismiss(None)
