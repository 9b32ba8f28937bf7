"""A metric over steps as a labelled sparkline, and the short text forms of progress, ETA and values.

No plotting library: Textual's `Sparkline` draws the curve; the labels give its scale.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.widgets import Sparkline, Static

from tui.progress import eta_text, fmt_value, progress_bar

AXIS_WIDTH = 9
MAX_POINTS = 20_000  # kept per chart; older points are thinned out beyond that
__all__ = ["MetricChart", "eta_text", "fmt_value", "progress_bar"]


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


class MetricChart(Vertical):
    """A title line with the last and best values, then the curve with its max and min on the left.

    `extend` appends points (step, value) as they arrive; `clear` starts over (a retried run).
    """

    DEFAULT_CSS = """
    MetricChart {
        height: auto;
        margin-bottom: 1;
    }
    MetricChart .chart-title {
        height: 1;
    }
    MetricChart .chart-body {
        height: 3;
    }
    MetricChart .chart-axis {
        width: 9;
        height: 3;
        color: $text-muted;
    }
    MetricChart Sparkline {
        width: 1fr;
        height: 3;
    }
    """

    def __init__(self, title: str, *, lower_is_better: bool = True, id: str | None = None) -> None:
        super().__init__(id=id)
        self.title = title
        self.lower_is_better = lower_is_better
        self.points: list[tuple[int, float]] = []
        self._ready = False  # set once mounted (`is_mounted` is still False in on_mount)

    def compose(self) -> ComposeResult:
        yield Static("", classes="chart-title")
        with Horizontal(classes="chart-body"):
            yield Static("", classes="chart-axis")
            yield Sparkline([], summary_function=_mean)

    def on_mount(self) -> None:
        self._ready = True
        self._show()

    @property
    def last(self) -> float | None:
        return self.points[-1][1] if self.points else None

    def extend(self, points: Iterable[tuple[int, float]]) -> None:
        """Add points newer than the last one shown (older or repeated steps replace nothing and are skipped)."""
        last_step = self.points[-1][0] if self.points else None
        added = [(s, v) for s, v in points if last_step is None or s > last_step]
        if not added:
            return
        self.points.extend(added)
        if len(self.points) > MAX_POINTS:
            self.points = self.points[::2]
        self._show()

    def clear(self) -> None:
        self.points = []
        self._show()

    def summary(self) -> str:
        """The title line's text (markup)."""
        title = f"[b]{escape(self.title)}[/b]"
        if not self.points:
            return f"{title}  [dim]no points yet[/dim]"
        step, value = self.points[-1]
        pick = min if self.lower_is_better else max
        best_step, best = pick(self.points, key=lambda p: p[1])
        label = "min" if self.lower_is_better else "max"
        first = self.points[0][0]
        return (f"{title}  last [b]{fmt_value(value)}[/b] @{step} · {label} {fmt_value(best)} @{best_step}"
                f" [dim]· {len(self.points)} pts, steps {first}..{step}[/dim]")  # fmt: skip

    def _show(self) -> None:
        if not self._ready:
            return
        self.query_one(".chart-title", Static).update(self.summary())
        values = [v for _, v in self.points]
        axis = ""
        if values:
            top, bottom = max(values), min(values)
            w = AXIS_WIDTH - 2
            axis = f"{fmt_value(top):>{w}} ┤\n{'':>{w}} │\n{fmt_value(bottom):>{w}} ┤"
        self.query_one(".chart-axis", Static).update(axis)
        self.query_one(".chart-body").display = bool(values)
        self.query_one(Sparkline).data = values
