"""The decision guide, the optional first step of a new project: fine-tune, RAG or prompting, and the data
checklist. The verdict is stored on the project (projects.guide) and shown on its screen; esc skips."""

from __future__ import annotations

from functools import partial
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Checkbox, Label, Static
from textual.worker import Worker

from store.db import Store
from tui.widgets.submit_form import SubmitInWorker

QUESTIONS = [  # each line fits the dialog at 80 columns
    ("prompt_works", "A prompt with a few examples does the task well"),
    ("changing_knowledge", "It needs facts that change often or are too many"),
    ("new_behaviour", "It needs a new behaviour, output format or style"),
]
CHECKLIST = [
    ("enough_examples", "Enough examples (hundreds at least)"),
    ("held_out", "A held-out set to evaluate on"),
    ("licence", "The data's licence allows training"),
    ("pii", "Checked for personal data (PII)"),
    ("format", "In a layout tunedeck reads (chat, alpaca, pairs...)"),
]
WHY = {
    "prompting": "a prompt with examples, no training",
    "rag": "retrieve the documents when asked",
    "fine-tune": "the behaviour has to be learned",
}


def guide_verdict(answers: dict[str, bool]) -> str:
    """fine-tune, rag or prompting from the answers to QUESTIONS (the cheapest thing that works wins)."""
    if answers.get("prompt_works"):
        return "prompting"
    if answers.get("new_behaviour"):
        return "fine-tune"
    if answers.get("changing_knowledge"):
        return "rag"
    return "prompting"


def _save(store: Store, project: str, guide: dict[str, Any]) -> dict[str, Any]:
    from store.projects import set_project_guide  # SQLAlchemy on the first write, in this worker

    with store.write() as session:
        set_project_guide(session, project, guide)
    return guide


class GuideScreen(SubmitInWorker, ModalScreen[dict[str, Any] | None]):
    """Three questions and the data checklist (space ticks); enter saves the verdict, esc skips."""

    HELP_TITLE = "Decision guide"
    DEFAULT_CSS = """
    GuideScreen { align: center middle; }
    GuideScreen Checkbox { height: 1; padding: 0; }
    GuideScreen #guide-verdict { margin-top: 1; }
    """
    BINDINGS = [
        Binding("escape", "skip", "Skip", id="guide.skip"),
        Binding("enter,ctrl+s", "save", "Save verdict", priority=True, id="guide.save"),
    ]

    def __init__(self, store: Store, project: str) -> None:
        super().__init__()
        self.store = store
        self.project = project

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"Fine-tune, RAG or a prompt? · [b]{escape(self.project)}[/b]", classes="dialog-title")
            for key, text in QUESTIONS:
                yield Checkbox(text, id=f"q-{key}", compact=True)
            yield Label("Data checklist")
            for key, text in CHECKLIST:
                yield Checkbox(text, id=f"c-{key}", compact=True)
            yield Static("", id="guide-verdict")
            yield Static("", id="error", classes="error")
            yield Static("space ticks · enter saves · esc skips", classes="hint")

    def on_mount(self) -> None:
        self.show_error("")
        self._show_verdict()

    def answers(self) -> dict[str, bool]:
        """The questions' ticks."""
        return {key: self.query_one(f"#q-{key}", Checkbox).value for key, _ in QUESTIONS}

    def checklist(self) -> dict[str, bool]:
        """The data checklist's ticks."""
        return {key: self.query_one(f"#c-{key}", Checkbox).value for key, _ in CHECKLIST}

    def guide(self) -> dict[str, Any]:
        """What is stored on the project."""
        answers = self.answers()
        return {"verdict": guide_verdict(answers), "answers": answers, "checklist": self.checklist()}

    @on(Checkbox.Changed)
    def _show_verdict(self) -> None:
        verdict = guide_verdict(self.answers())
        line = f"[b]→ {verdict}[/b]: {escape(WHY[verdict])}"
        missing = [text.split(" (")[0] for key, text in CHECKLIST if not self.checklist()[key]]
        if verdict == "fine-tune" and missing:
            line += f"\n[$warning]before training: {len(missing)} checklist item(s) open[/]"
        self.query_one("#guide-verdict", Static).update(line)

    def action_save(self) -> None:
        self.submit_work(partial(_save, self.store, self.project, self.guide()))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.submit_finished(event)

    def action_skip(self) -> None:
        self.dismiss(None)
