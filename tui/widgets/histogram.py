"""A horizontal bar chart of a histogram, drawn with block characters (fits any width, no plotting library)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

EIGHTHS = " ▏▎▍▌▋▊▉"


@dataclass(frozen=True)
class Bin:
    """One bar: values in [lo, hi) and how many there are."""

    lo: int
    hi: int
    count: int


def bar_text(value: float, top: float, width: int) -> str:
    """A bar of `value / top` of `width` cells, in eighths of a cell; never empty for a non-zero value."""
    if top <= 0 or value <= 0 or width <= 0:
        return ""
    eighths = max(1, round(value / top * width * 8))
    full, part = divmod(eighths, 8)
    return "█" * full + (EIGHTHS[part] if part else "")


def histogram_lines(bins: Sequence[Bin], width: int, limit: int | None = None) -> list[Text]:
    """One line per bin: `lo-hi │bar count`; bins at or past `limit` (e.g. max_length) in red, with a marker."""
    if not bins:
        return []
    labels = [f"{b.lo:,}-{b.hi:,}" for b in bins]
    label_w = max(len(label) for label in labels)
    counts = [f"{b.count:,}" for b in bins]
    count_w = max(len(c) for c in counts)
    marker = " ◀ max length"
    has_marker = limit is not None and any(b.lo <= limit < b.hi for b in bins)
    bar_w = max(4, width - label_w - count_w - 3 - (len(marker) if has_marker else 0))
    top = max(b.count for b in bins)
    lines = []
    for b, label, count in zip(bins, labels, counts, strict=True):
        over = limit is not None and b.lo > limit
        line = Text()
        line.append(label.rjust(label_w), style="bold")
        line.append(" │", style="dim")
        line.append(bar_text(b.count, top, bar_w).ljust(bar_w), style="red" if over else "green")
        line.append(" " + count.rjust(count_w), style="red" if over else "")
        if has_marker and b.lo <= limit < b.hi:  # type: ignore[operator]
            line.append(marker, style="bold yellow")
        lines.append(line)
    return lines


class HistogramBars(Widget):
    """A histogram as horizontal bars with counts; `limit` marks a threshold such as max_length."""

    DEFAULT_CSS = """
    HistogramBars {
        height: auto;
    }
    """

    def __init__(self, bins: Sequence[Bin] = (), limit: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bins = list(bins)
        self.limit = limit

    def set_data(self, bins: Sequence[Bin], limit: int | None = None) -> None:
        self.bins = list(bins)
        self.limit = limit
        self.refresh(layout=True)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, len(self.bins))

    def render(self) -> Text:
        lines = histogram_lines(self.bins, self.content_size.width or 60, self.limit)
        if not lines:
            return Text("no lengths to show", style="dim")
        return Text("\n").join(lines)
