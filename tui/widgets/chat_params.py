"""The chat side panel: system prompt and sampling parameters as text boxes, and the model's facts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Input, Label, Static

from core.chat import params_from_text, sampling_params

if TYPE_CHECKING:
    from engine.chat.params import SamplingParams

FIELDS: list[tuple[str, str]] = [
    ("temperature", "Temperature"),
    ("top_p", "Top p"),
    ("top_k", "Top k"),
    ("min_p", "Min p"),
    ("repeat_penalty", "Repeat penalty"),
    ("max_tokens", "Max tokens"),
    ("seed", "Seed (empty: random)"),
]


class ParamsPanel(VerticalScroll):
    """System prompt, sampling fields and a model block; `read()` parses them (BadParams names the bad one)."""

    DEFAULT_CSS = """
    ParamsPanel {
        width: 30;
        height: 1fr;
        padding: 0 1;
        border-left: vkey $primary;
        display: none;
    }
    ParamsPanel.-shown { display: block; }
    ParamsPanel Label { margin-top: 1; color: $text-muted; }
    ParamsPanel Input { width: 1fr; }
    ParamsPanel #model-facts { margin-top: 1; color: $text-muted; }
    """

    def __init__(self, system: str = "", params: SamplingParams | None = None, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._system = system
        self._params = params or sampling_params()

    def compose(self) -> ComposeResult:
        yield Label("System prompt")
        yield Input(self._system, placeholder="(the model's default)", id="param-system", compact=True)
        values = self._params.to_dict()
        for name, title in FIELDS:
            yield Label(title)
            value = values[name]
            yield Input("" if value is None else str(value), id=f"param-{name}", compact=True)
        yield Static("", id="model-facts")

    def read(self) -> tuple[str, SamplingParams]:
        """(system prompt, params) from the boxes; BadParams when a box does not parse or is out of range."""
        texts = {name: self.query_one(f"#param-{name}", Input).value for name, _ in FIELDS}
        system = self.query_one("#param-system", Input).value.strip()
        return system, params_from_text(texts)

    def set_values(self, system: str, params: SamplingParams) -> None:
        """Fill the boxes (a reopened session's settings)."""
        self.query_one("#param-system", Input).value = system
        for name, value in params.to_dict().items():
            self.query_one(f"#param-{name}", Input).value = "" if value is None else str(value)

    def show_facts(self, text: str) -> None:
        """Show the loaded model's facts (markup) under the settings."""
        self.query_one("#model-facts", Static).update(text)
