"""Search a log of any size without reading it into memory, as a pager does: an index of where each line
starts (8 bytes a line, extended as the file grows) and a search that reads the file in chunks.

`LineIndex.find` looks for text case-insensitively from a line, forwards or backwards, and answers the
matching line's number; `lines` reads a window of lines by number (the log view shows the window around a
match, however far back it is).
"""

from __future__ import annotations

import bisect
from array import array
from pathlib import Path

from tui.widgets.log_tail import clean_line

CHUNK = 1 << 20


class LineIndex:
    """Where each line of a (growing) file starts. Line numbers count from 0."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.starts = array("q", [0])  # starts[i]: byte offset of line i; the last entry starts the open line
        self.scanned = 0

    def update(self) -> int:
        """Index what was appended since the last call (all again if the file got shorter); returns the line count."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            size = 0
        if size < self.scanned:
            self.starts, self.scanned = array("q", [0]), 0
        with open(self.path, "rb") if size else _Empty() as fh:
            fh.seek(self.scanned)
            while self.scanned < size:
                data = fh.read(CHUNK)
                if not data:
                    break
                base, at = self.scanned, data.find(b"\n")
                while at >= 0:
                    self.starts.append(base + at + 1)
                    at = data.find(b"\n", at + 1)
                self.scanned += len(data)
        return self.line_count

    @property
    def line_count(self) -> int:
        """Lines in the file, a last one without its newline included."""
        return len(self.starts) - (1 if self.starts[-1] >= self.scanned else 0)

    def line_at(self, offset: int) -> int:
        """The number of the line holding byte `offset`."""
        return max(0, bisect.bisect_right(self.starts, offset) - 1)

    def lines(self, first: int, count: int) -> list[str]:
        """Lines `first` .. `first + count - 1` (as many as there are), cleaned as the log view shows them."""
        first = max(0, min(first, self.line_count))
        last = min(self.line_count, first + count)
        if last <= first:
            return []
        end = self.starts[last] if last < len(self.starts) else self.scanned
        with open(self.path, "rb") as fh:
            fh.seek(self.starts[first])
            data = fh.read(end - self.starts[first])
        text = data.decode("utf-8", errors="replace")
        out = [clean_line(line) for line in text.split("\n")]
        return out[: last - first]

    def find(self, text: str, start: int, backward: bool = False) -> int | None:
        """The first line at or after line `start` (at or before, `backward`) that holds `text`, ignoring ASCII case."""
        needle = text.lower().encode("utf-8")
        if not needle or not self.line_count:
            return None
        start = max(0, min(start, self.line_count - 1))
        with open(self.path, "rb") as fh:
            if not backward:
                pos = self.starts[start]
                while pos < self.scanned:
                    fh.seek(pos)
                    data = fh.read(min(CHUNK + len(needle), self.scanned - pos))
                    at = data.lower().find(needle)
                    if 0 <= at < CHUNK:  # (one starting in the next chunk is found from there)
                        return self.line_at(pos + at)
                    pos += CHUNK
                return None
            end = self.starts[start + 1] if start + 1 < len(self.starts) else self.scanned
            while end > 0:
                begin = max(0, end - CHUNK)
                fh.seek(begin)
                data = fh.read(min(end + len(needle), self.scanned) - begin)
                at = data.lower().rfind(needle, 0, end - begin + len(needle) - 1)
                if at >= 0 and begin + at < end:
                    return self.line_at(begin + at)
                end = begin
        return None


class _Empty:
    """A file that is not there yet, as an empty one."""

    def __enter__(self) -> _Empty:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def seek(self, offset: int) -> None:
        pass

    def read(self, n: int) -> bytes:
        return b""
