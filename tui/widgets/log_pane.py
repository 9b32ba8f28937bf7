"""A screen's Log tab over a job's log file: the tail read by offset on each poll, a status line (following,
paused, empty), `/` search (LogSearch) and `end` back to the tail. The run and job screens mix it in.

The screen gives a `LogTail` with id `log-body`, a status Static with id `log_status_id`, a `SearchBox`, an
`action_show_tab` and a `poll`; it hands each poll's (path, chunk) to `show_log` unless `_log_generation` moved
on since the poll started (a poll begun before `end` went back to the tail read from the old place).
"""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Static

from tui.widgets.log_search import LogSearch, SearchBox
from tui.widgets.log_tail import LogChunk, LogTail


def log_bindings(screen: str) -> list[Binding]:
    """The Log tab's keys for screen `screen` (its binding ids' prefix): end follows, / n N search."""
    return [
        # priority: over the log's own end
        Binding("end", "follow_log", "Follow the log", show=False, priority=True, id=f"{screen}.follow_log"),
        *LogSearch.SEARCH_BINDINGS,
    ]


class LogPane(LogSearch):
    """The Log tab's behaviour (a mixin for Screen subclasses)."""

    LOG_EMPTY = "No log yet: it starts when a runner picks the job up."
    _log_path = ""
    _log_offset = 0
    _log_generation = 0  # bumped when the view goes back to the tail: older polls' lines are dropped

    def log_file(self) -> str | None:
        return self._log_path or None

    def show_log(self, path: str, chunk: LogChunk) -> bool:
        """Add a poll's new lines to the view; not while a search's window is on show (returns False then)."""
        if self.searching is not None:
            return False
        log = self.query_one("#log-body", LogTail)  # type: ignore[attr-defined]
        if path != self._log_path or chunk.reset:
            log.clear()
            self._log_path = path
        if chunk.skipped and not log.line_count:
            log.add_lines([f"… the first {chunk.skipped:,} bytes are not shown (/ searches them)"])
        log.add_lines(chunk.lines)
        self._log_offset = chunk.offset
        self.show_log_status()
        return True

    def show_log_status(self) -> None:
        """The status line: following, paused or empty (a search's own status stays while it shows)."""
        if self.searching is not None:
            return
        log = self.query_one("#log-body", LogTail)  # type: ignore[attr-defined]
        if not log.line_count:
            text = f"[dim]{self.LOG_EMPTY}[/dim]"
        elif log.following:
            text = f"[green]following[/green] [dim]· {log.line_count:,} lines · ↑/pgup scroll back[/dim]"
        else:
            text = f"[yellow]paused[/yellow] [dim]· {log.line_count:,} lines · end follows again[/dim]"
        self.query_one(f"#{self.log_status_id}", Static).update(text)  # type: ignore[attr-defined]

    def on_log_tail_following(self, _: LogTail.Following) -> None:
        self.show_log_status()

    def log_follow_allowed(self) -> bool:
        """`end` answers on the Log tab, and not while a search is being typed."""
        return self.active_tab == "log" and not self.query_one(SearchBox).has_focus  # type: ignore[attr-defined]

    def action_follow_log(self) -> None:
        """end: the log's end, following it (after a search: the tail is read again)."""
        self.action_show_tab("log")  # type: ignore[attr-defined]
        log = self.query_one("#log-body", LogTail)  # type: ignore[attr-defined]
        if self.leave_search():
            log.clear()
            self._log_path, self._log_offset = "", 0
            self._log_generation += 1
            self.poll()  # type: ignore[attr-defined]
        self.call_after_refresh(log.follow)  # type: ignore[attr-defined]
        log.focus()
