"""The new-chat form: one of the project's GGUFs (a list), a GGUF path (with completion) or artifact id, and
optionally a second model to compare."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select, Static

from tui.widgets.path_input import PathInput
from tui.widgets.submit_form import SubmitInWorker

GGUF_SUFFIXES = (".gguf",)


@dataclass(frozen=True)
class NewChat:
    """What the form returns: the model, and the one to compare it with ('' for a plain chat)."""

    model: str
    compare: str = ""


def check_model_text(text: str) -> str:
    """'' when `text` can name a model (an existing file, or an artifact id or name), else why not."""
    from core.chat import looks_like_path

    if not text:
        return "give a .gguf file or an artifact id"
    if looks_like_path(text) and not Path(text).expanduser().exists():
        return f"{text}: no such file"
    return ""


class NewChatDialog(SubmitInWorker, ModalScreen[NewChat | None]):  # for its error line
    """Model path (tab completes), optional second model; enter opens the chat (or the comparison)."""

    HELP_TITLE = "New chat"
    AUTO_FOCUS = "#model"
    DEFAULT_CSS = """
    NewChatDialog { align: center middle; }
    """
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="new_chat.cancel"),
    ]

    def __init__(self, ggufs: Sequence[tuple[str, str]] = ()) -> None:
        """`ggufs`: the project's GGUF artifacts as (label, artifact id), newest first; the first is chosen."""
        super().__init__()
        self.ggufs = list(ggufs)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static("New chat", classes="dialog-title")
            if self.ggufs:
                yield Label("Model: one of the project's GGUFs")
                yield Select(self.ggufs, value=self.ggufs[0][1], allow_blank=True, prompt="none: give one below",
                             compact=True, id="pick")  # fmt: skip
                yield Label("or a .gguf file, or a gguf artifact's id or name")
            else:
                yield Label("Model: a .gguf file, or a gguf/quant artifact's id or name")
            yield PathInput(placeholder="path/to/model.gguf", id="model", suffixes=GGUF_SUFFIXES)
            yield Label("Compare with (optional): answers side by side")
            yield PathInput(placeholder="leave empty for a plain chat", id="compare", suffixes=GGUF_SUFFIXES)
            yield Static("", id="error", classes="error")
            yield Static("enter opens · tab completes a path · shift+tab: the list · esc cancels", classes="hint")

    def on_mount(self) -> None:
        self.show_error("")
        if self.ggufs:
            self.query_one("#model", Input).value = self.ggufs[0][1]  # the newest GGUF: enter opens it
        self.query_one("#model", Input).focus()

    @on(Select.Changed, "#pick")
    def _picked(self, event: Select.Changed) -> None:
        if event.value is not Select.NULL:
            self.query_one("#model", Input).value = str(event.value)

    @on(Input.Changed)
    def _changed(self) -> None:
        self.show_error("")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def _submit(self) -> None:
        model = self.query_one("#model", Input).value.strip()
        compare = self.query_one("#compare", Input).value.strip()
        for text, box in ((model, "#model"), (compare, "#compare")):
            problem = check_model_text(text) if text or box == "#model" else ""
            if problem:
                self.show_error(problem)
                self.query_one(box, Input).focus()
                return
        self.dismiss(NewChat(model, compare))

    def action_cancel(self) -> None:
        self.dismiss(None)
