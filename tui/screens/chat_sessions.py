"""Saved chat sessions of every project (and those from `tunedeck chat` in none); enter reopens one."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from store.db import Store
from tui.widgets.formatting import ago, clip
from tui.widgets.live_table import LiveTable


def session_rows(store: Store) -> list[tuple[int, str, str, str, str, str]]:
    """(id, title, model file, project, messages, updated) for every session, most recent first."""
    from store.chat import session_summaries

    with store.raw() as conn:
        summaries = session_summaries(conn)
    return [
        (s.id, clip(s.title or f"session {s.id}", 28), clip(Path(s.model_path).name, 18), clip(s.project or "-", 10),
         str(s.messages), ago(s.updated_at))
        for s in summaries
    ]  # fmt: skip


SESSION_COLUMNS = [("title", "Title"), ("model", "Model"), ("project", "Project"), ("msgs", "Msgs"),
                   ("updated", "Updated")]


class ChatSessionsScreen(ModalScreen[int | None]):
    """A list of saved chat sessions; enter returns the highlighted one's id, esc nothing."""

    HELP_TITLE = "Chat sessions"
    DEFAULT_CSS = """
    ChatSessionsScreen { align: center middle; }
    ChatSessionsScreen #sessions-box { width: 78; max-width: 100%; height: 20; max-height: 100%;
        border: round $accent; background: $surface; padding: 0 1; }
    ChatSessionsScreen DataTable { height: 1fr; }
    ChatSessionsScreen .hint { height: 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape", "close", "Close", id="chat_sessions.close"),
        Binding("enter", "open", "Open", show=False, id="chat_sessions.open"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="sessions-box"):
            yield Static("[b]Saved chat sessions[/b]")
            yield LiveTable(SESSION_COLUMNS, id="sessions")  # j/k, / and o/O as in every list
            yield Static("enter reopens · esc closes", classes="hint")

    def on_mount(self) -> None:
        self._read()

    @work(thread=True, exit_on_error=False)
    def _read(self) -> None:
        rows = session_rows(self.app.store)  # type: ignore[attr-defined]
        self.app.call_from_thread(self._show, rows)

    def _show(self, rows: list[tuple[int, str, str, str, str, str]]) -> None:
        table = self.query_one(LiveTable)
        table.sync([(str(sid), tuple(cells)) for sid, *cells in rows])
        table.display = True  # a LiveTable starts hidden (app.tcss); the hint says when the list is empty
        if not rows:
            self.query_one(".hint", Static).update("No saved sessions yet · esc closes")
        table.focus()

    @on(DataTable.RowSelected)
    def _selected(self) -> None:
        self.action_open()

    def action_open(self) -> None:
        key = self.query_one(LiveTable).current_key
        if key is not None:
            self.dismiss(int(key))

    def action_close(self) -> None:
        self.dismiss(None)
