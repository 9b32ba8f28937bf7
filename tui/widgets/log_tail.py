"""Following a growing log file: read by byte offset in a worker, shown in a `Log` that follows its end.

The log follows new lines while it is scrolled to the bottom; scrolled up, it stays put (new lines still
arrive below) until the user goes back to the bottom (`end`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from textual.message import Message
from textual.widgets import Log

FIRST_READ_BYTES = 256 * 1024  # a long log opens on its last part
READ_BYTES = 1024 * 1024  # at most this much per poll; the rest comes on the next ones
MAX_LINES = 10_000
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


@dataclass
class LogChunk:
    """New complete lines of a log from `offset` on, and where the next read starts."""

    lines: list[str] = field(default_factory=list)
    offset: int = 0  # where the next read starts
    skipped: int = 0  # bytes skipped at the start (a long log on its first read)
    reset: bool = False  # the file got shorter than the last offset: start over
    missing: bool = False


def clean_line(line: str) -> str:
    """A log line as a terminal would leave it: the last carriage-return rewrite of a progress bar, no ANSI."""
    line = _ANSI.sub("", line.rstrip("\r"))
    if "\r" in line:
        parts = [p for p in line.split("\r") if p.strip()]
        line = parts[-1] if parts else ""
    return line


def read_log(path: str | Path | None, offset: int, final: bool = False) -> LogChunk:
    """The complete lines after `offset` (a trailing partial line waits for its newline unless `final`)."""
    if not path:
        return LogChunk(offset=offset, missing=True)
    chunk = LogChunk(offset=offset)
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            if size < offset:
                chunk.reset, offset = True, 0
            start = offset
            if offset == 0 and size > FIRST_READ_BYTES:
                start = size - FIRST_READ_BYTES
            fh.seek(start)
            data = fh.read(READ_BYTES)
    except FileNotFoundError:
        chunk.missing = True
        return chunk
    if start > offset:
        newline = data.find(b"\n")
        cut = newline + 1 if newline >= 0 else len(data)
        data, start = data[cut:], start + cut
        chunk.skipped = start
    end = len(data) if final else data.rfind(b"\n") + 1
    chunk.offset = start + end
    text = data[:end].decode("utf-8", errors="replace")
    chunk.lines = [clean_line(line) for line in text.split("\n")]
    if chunk.lines and chunk.lines[-1] == "":
        chunk.lines.pop()
    return chunk


class LogTail(Log):
    """A Log that follows its end only while scrolled to the bottom; posts `Following` when that changes."""

    class Following(Message):
        """Whether the log follows new lines now."""

        def __init__(self, log: LogTail, following: bool) -> None:
            super().__init__()
            self.log = log
            self.following = following

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("max_lines", MAX_LINES)
        kwargs.setdefault("auto_scroll", True)
        super().__init__(**kwargs)
        self._following = True

    @property
    def following(self) -> bool:
        """True while the view is at the bottom (or there is nothing to scroll)."""
        return self.is_vertical_scroll_end

    def add_lines(self, lines: list[str]) -> None:
        """Append lines; the view moves with them only if it was at the bottom."""
        if lines:
            self.write_lines(lines)  # Log scrolls to the end only when it was already there

    def follow(self) -> None:
        """Jump to the end and follow from there."""
        self.scroll_end(animate=False, immediate=True)
        self._check()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._check()

    def on_resize(self) -> None:
        self._check()

    def _check(self) -> None:
        following = self.following
        if following != self._following:
            self._following = following
            self.post_message(self.Following(self, following))
