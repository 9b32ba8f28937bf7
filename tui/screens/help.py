"""`?`: every key of the screen below and the app-wide keys, read from their BINDINGS with the user's
keymap applied, each with the binding id that keys.toml overrides it by (tui/keymap.py)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.markup import escape as _markup_escape
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from tui.widgets.key_actions import KeyAction, key_actions, screen_title


def escape(text: str) -> str:
    """Markup-escape text, including a `[` that Textual's escape leaves alone (e.g. `[ / pgup`)."""
    return _markup_escape(text).replace("[", "\\[").replace("\\\\[", "\\[")


class HelpScreen(ModalScreen[None]):
    """A scrollable list of key bindings; esc or ? closes it (q quits, as everywhere)."""

    HELP_TITLE = "Help"
    BINDINGS = [
        Binding("escape,question_mark", "close", "Close help", id="help.close"),
        Binding("q", "app.quit", "Quit", id="app.quit"),  # a modal screen hides the app's keys: q quits here too
    ]

    def __init__(self, below: Screen) -> None:
        super().__init__()
        self.below_title = screen_title(below)
        self.rows: list[KeyAction] = key_actions(below)

    def compose(self) -> ComposeResult:
        lines: list[str] = []
        section = None
        width = max((len(row.keys_text) for row in self.rows), default=0) + 2
        describe = max((len(row.description) for row in self.rows), default=0) + 2
        for row in self.rows:
            if row.section != section:
                if section is not None:
                    lines.append("")
                lines.append(f"[b]{escape(row.section)}[/b]")
                section = row.section
            described = escape(row.description.ljust(describe))
            ids = f"[dim]{escape(' '.join(row.ids))}[/]" if row.ids else ""
            lines.append(f"  [b $accent]{escape(row.keys_text.ljust(width))}[/]{described}{ids}".rstrip())
        with Vertical(id="help-box"):
            yield Static(f"Keys: {escape(self.below_title)}", id="help-title")
            with VerticalScroll(id="help-body"):
                yield Static("\n".join(lines), id="help-text")
            yield Static("esc or ? closes this · ↑/↓ scroll · q quits", id="help-hint")

    def on_mount(self) -> None:
        self.query_one("#help-body").focus()

    def action_close(self) -> None:
        self.dismiss(None)
