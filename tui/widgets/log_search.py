"""`/` in a screen's Log tab: search the whole log file (not only the part on screen), n and N for the later
and earlier matches, `end` back to following the log. A `LineIndex` does the reading in a worker thread; the
log view then shows a window of lines around the match, the match marked with `»`.

Screens mix `LogSearch` in; they give the log file (`log_file`), the log view (`#log-body`), a status line
(`log_status_id`), hand worker events to `search_worker_changed`, and go back to the tail after
`leave_search` (their own follow action calls it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from textual.binding import Binding
from textual.markup import escape
from textual.widgets import Input, Static
from textual.worker import Worker, WorkerState

from tui.widgets.log_index import LineIndex
from tui.widgets.log_tail import LogTail

WINDOW = 400  # lines shown around a match
MARK = "» "


@dataclass
class Found:
    """A search's answer: the matching line (None: no match), the window of lines around it and the line count."""

    query: str
    line: int | None
    first: int = 0
    lines: list[str] | None = None
    total: int = 0


def search(index: LineIndex, query: str, start: int | None, backward: bool) -> Found:
    """Index what is new, then find `query` from line `start` (None: from the end, backwards) and read its window."""
    total = index.update()
    if start is None:
        start, backward = total - 1, True
    line = index.find(query, start, backward=backward)
    if line is None:
        return Found(query, None, total=total)
    first = max(0, line - WINDOW // 2)
    return Found(query, line, first, index.lines(first, WINDOW), total)


class SearchBox(Input):
    """The search box: enter searches, esc closes it (and only it: the screen stays)."""

    BINDINGS = [Binding("escape", "close", "Close the search", show=False, id="search_box.close")]

    def __init__(self) -> None:
        super().__init__(placeholder="search the whole log: enter finds the latest match · esc cancels",
                         id="log-search")  # fmt: skip
        self.display = False

    def action_close(self) -> None:
        self.display = False
        self.screen.query_one("#log-body").focus()


class LogSearch:
    """The search behaviour for a screen with a Log tab (a mixin for Screen subclasses)."""

    SEARCH_BINDINGS = [
        Binding("slash", "search_log", "Search log", id="log_search.search_log"),
        Binding("n", "search_again(False)", "Next match", show=False, id="log_search.next_match"),
        Binding("N", "search_again(True)", "Previous match", show=False, id="log_search.previous_match"),
    ]
    log_status_id = "log-status"
    searching: Found | None = None  # the match on show; None while the view follows the log
    _index: LineIndex | None = None

    def log_file(self) -> str | None:  # pragma: no cover - each screen says
        raise NotImplementedError

    def action_search_log(self) -> None:
        """/: the search box over the log."""
        box = self.query_one("#log-search", SearchBox)  # type: ignore[attr-defined]
        box.display = True  # first: the tab switch leaves focus alone while the box shows
        self.action_show_tab("log")  # type: ignore[attr-defined]
        self.call_after_refresh(box.focus)  # type: ignore[attr-defined]

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "log-search":
            return
        event.stop()
        event.input.display = False
        self.query_one("#log-body").focus()  # type: ignore[attr-defined]
        if event.value.strip():
            self._run_search(event.value.strip(), None, True)

    def action_search_again(self, backward: bool) -> None:
        """n / N: the next later or earlier match of the last search."""
        found = self.searching
        if found is None or found.line is None:
            return
        self._run_search(found.query, found.line - 1 if backward else found.line + 1, backward)

    def _run_search(self, query: str, start: int | None, backward: bool) -> None:
        path = self.log_file()
        if not path:
            self.notify("There is no log to search yet.", severity="warning")  # type: ignore[attr-defined]
            return
        if self._index is None or str(self._index.path) != path:
            self._index = LineIndex(path)
        self.run_worker(partial(search, self._index, query, start, backward), group="log-search",  # type: ignore
                        thread=True, exclusive=True, exit_on_error=False)  # fmt: skip

    def search_worker_changed(self, event: Worker.StateChanged) -> bool:
        """The screen's on_worker_state_changed hands its events here first; True when it was the search's."""
        if event.worker.group != "log-search":
            return False
        if event.state == WorkerState.ERROR:
            self.notify(f"Could not search the log: {event.worker.error}", severity="error")  # type: ignore
        if event.state != WorkerState.SUCCESS:
            return True
        found: Found = event.worker.result
        status = self.query_one(f"#{self.log_status_id}", Static)  # type: ignore[attr-defined]
        if found.line is None:
            where = "before" if self.searching is not None else "in"
            status.update(f"[yellow]no match for[/yellow] {escape(found.query)!r} [dim]{where} the log "
                          f"({found.total:,} lines) · end follows again[/dim]")  # fmt: skip
            return True
        self.searching = found
        log = self.query_one("#log-body", LogTail)  # type: ignore[attr-defined]
        lines = list(found.lines or [])
        at = found.line - found.first
        if 0 <= at < len(lines):
            lines[at] = MARK + lines[at]
        log.clear()
        log.add_lines(lines)
        self.call_after_refresh(log.scroll_to, y=max(0, at - 3), animate=False)  # type: ignore[attr-defined]
        status.update(f"[b]{escape(found.query)}[/b] at line {found.line + 1:,} of {found.total:,} "
                      "[dim]· n later · N earlier · end follows again[/dim]")
        return True

    def leave_search(self) -> bool:
        """Back to following the log's end; True if a search was on show (the screen reloads the tail)."""
        if self.searching is None:
            return False
        self.searching = None
        return True
