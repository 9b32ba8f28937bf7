"""Metrics over steps as line charts with axes, drawn by textual-plot's `PlotWidget`.

A `MetricChart` holds one or more series (train and eval loss on one chart; one line per run in compare)
and redraws on new points, on a resize and when smoothing or the log scale is toggled. Before drawing,
each series is cut down to a minimum and a maximum per pixel column (`downsample`), so a run of 100,000
points draws about as fast as one of a few hundred and no spike is lost. Smoothing is an exponential
moving average (debiased, as TensorBoard's), kept up to date as points arrive; with it on, the raw
curve stays behind in a dim colour.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.markup import escape
from textual.widgets import Static
from textual_plot import AxisFormatter, HiResMode, PlotWidget

from core.progress import eta_text, fmt_value, progress_bar

__all__ = ["MetricChart", "Series", "downsample", "eta_text", "fmt_value", "progress_bar"]

SMOOTHING = 0.8  # the EMA's weight on the past
COLUMNS_PER_CELL = 2  # braille dots across a cell
STYLES = ["cyan", "magenta", "yellow", "green", "red", "bright_blue", "white", "bright_magenta"]


def downsample(x: np.ndarray, y: np.ndarray, buckets: int) -> tuple[np.ndarray, np.ndarray]:
    """At most 2 * `buckets` points: the minimum and the maximum of each of `buckets` equal spans of x (which
    must be sorted), in that order, at the span's middle. Short series come back as they are."""
    if len(x) <= 2 * buckets or buckets < 1:
        return x, y
    edges = np.linspace(x[0], x[-1], buckets + 1)
    starts = np.unique(np.searchsorted(x, edges[:-1], side="left"))
    starts = starts[starts < len(x)]
    lows = np.minimum.reduceat(y, starts)
    highs = np.maximum.reduceat(y, starts)
    ends = np.append(starts[1:], len(x)) - 1
    mids = (x[starts] + x[ends]) / 2.0
    return np.repeat(mids, 2), np.column_stack((lows, highs)).ravel()


class Ticks(AxisFormatter):
    """Nice ticks (1, 2, 5 x 10^n), at most `limit` of them, with short labels; `log` labels 10^tick."""

    def __init__(self, limit: int = 4, log: bool = False) -> None:
        self.limit = limit
        self.log = log

    def get_ticks(self, min_: float, max_: float, max_ticks: int = 8) -> list[float]:
        count = max(1, min(self.limit, max_ticks))
        span = max_ - min_
        if not math.isfinite(span) or span <= 0:
            return [min_]
        raw = span / count
        power = 10 ** math.floor(math.log10(raw))
        interval = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
        first = math.ceil(min_ / interval) * interval
        return [float(t) for t in np.arange(first, max_ + interval * 1e-6, interval)]

    def get_labels_for_ticks(self, ticks: Sequence[float]) -> list[str]:
        return [short_number(10**t if self.log else t) for t in ticks]


def short_number(value: float) -> str:
    """A tick label in at most 6 characters: 0.0003, 1.25, 12k, 1.2M."""
    a = abs(value)
    if a >= 1e6:
        return f"{value / 1e6:.3g}M"
    if a >= 1e4:
        return f"{value / 1e3:.3g}k"
    if a != 0 and a < 1e-3:
        exponent = math.floor(math.log10(a))
        return f"{value / 10**exponent:.2g}e{exponent}"
    return f"{value:.3g}"


class Plot(PlotWidget, can_focus=False):
    """PlotWidget without pan, zoom or its own keys (r, arrows): the screen's keys stay the screen's."""

    BINDINGS = []

    def __init__(self, **kwargs: object) -> None:
        super().__init__(allow_pan_and_zoom=False, **kwargs)  # type: ignore[arg-type]


class Series:
    """One line: its points (steps increasing) in growable numpy buffers, their running EMA, the best value so
    far (`lower` is better, or higher), and how it is drawn."""

    def __init__(self, name: str, label: str, style: str, lower: bool = True) -> None:
        self.name, self.label, self.style, self.lower = name, label, style, lower
        self.clear()

    def clear(self) -> None:
        self._buf = np.empty((3, 256))  # steps, values, smoothed
        self.n = 0
        self._ema = self._weight = 0.0
        self.best: tuple[float, float] | None = None  # (value, step)

    def add(self, step: float, value: float) -> None:
        if self.n == self._buf.shape[1]:
            self._buf = np.concatenate((self._buf, np.empty_like(self._buf)), axis=1)
        if math.isfinite(value):
            self._ema = SMOOTHING * self._ema + (1 - SMOOTHING) * value
            self._weight = SMOOTHING * self._weight + (1 - SMOOTHING)
            if self.best is None or (value < self.best[0] if self.lower else value > self.best[0]):
                self.best = (value, step)
        self._buf[:, self.n] = (step, value, self._ema / self._weight if self._weight else value)
        self.n += 1

    @property
    def steps(self) -> np.ndarray:
        return self._buf[0, :self.n]

    @property
    def values(self) -> np.ndarray:
        return self._buf[1, :self.n]

    @property
    def smooth(self) -> np.ndarray:
        return self._buf[2, :self.n]

    @property
    def last(self) -> tuple[float, float] | None:
        """(step, value) of the newest point."""
        return (float(self._buf[0, self.n - 1]), float(self._buf[1, self.n - 1])) if self.n else None

    @property
    def points(self) -> list[tuple[int, float]]:
        return [(int(s), float(v)) for s, v in zip(self.steps, self.values, strict=True)]


class MetricChart(Vertical):
    """A title line (each series' last and best value) over a line chart of one or more series.

    `extend(points, name)` appends a series' (step, value) points; `clear()` starts over (a retried run).
    `smoothing` and `log_scale` change how it is drawn, not what it holds.
    """

    DEFAULT_CSS = """
    MetricChart {
        height: 1fr;
        min-height: 5;
    }
    MetricChart .chart-title {
        height: 1;
    }
    MetricChart Plot {
        height: 1fr;
    }
    MetricChart .chart-empty {
        height: 1fr;
        color: $text-muted;
        padding: 0 2;
    }
    """

    def __init__(self, title: str, series: Sequence[tuple[str, str]] | None = None, *, lower_is_better: bool = True,
                 values_in_title: bool = True, id: str | None = None) -> None:  # fmt: skip
        super().__init__(id=id)
        self.title = title
        self.values_in_title = values_in_title  # off where a legend below says them (compare)
        self.lower_is_better = lower_is_better
        names = series or [("value", title)]
        self.series: dict[str, Series] = {
            name: Series(name, label, STYLES[i % len(STYLES)], lower_is_better) for i, (name, label) in enumerate(names)
        }
        self.smoothing = False
        self.log_scale = False
        self.redraws = 0  # how many times the plot was drawn (tests and the benchmark read it)
        self._ready = False

    def compose(self) -> ComposeResult:
        yield Static("", classes="chart-title")
        yield Plot()
        yield Static("no points yet", classes="chart-empty")

    def on_mount(self) -> None:
        plot = self.query_one(Plot)
        plot.margin_top = 0
        plot.margin_bottom = 1
        plot.margin_left = 7
        plot.set_x_formatter(Ticks(5))
        plot.set_y_formatter(Ticks(3))
        self._ready = True
        self.redraw()

    def on_resize(self) -> None:
        if self._ready:
            self.redraw()

    # -- data ------------------------------------------------------------------------

    @property
    def first(self) -> Series:
        return next(iter(self.series.values()))

    @property
    def points(self) -> list[tuple[int, float]]:
        """The first series' points (the chart's main metric)."""
        return self.first.points

    @property
    def last(self) -> float | None:
        last = self.first.last
        return last[1] if last else None

    def add_series(self, name: str, label: str, style: str | None = None) -> Series:
        """A new, empty series (compare adds one per run)."""
        series = Series(name, label, style or STYLES[len(self.series) % len(STYLES)], self.lower_is_better)
        self.series[name] = series
        return series

    def replace(self, series: Sequence[tuple[str, str, str, Sequence[tuple[float, float]]]]) -> None:
        """Show these series instead: (name, label, style, points) each (compare: a run each), and redraw."""
        self.series = {}
        for name, label, style, points in series:
            self.add_series(name, label, style)
            self.extend(points, name, redraw=False)
        self.redraw()

    def extend(self, points: Iterable[tuple[float, float]], name: str | None = None, redraw: bool = True) -> None:
        """Add points newer than the series' last one (older or repeated steps are skipped), then redraw."""
        series = self.series[name] if name is not None else self.first
        last = series.last[0] if series.last else None
        added = False
        for step, value in points:
            if last is None or step > last:
                series.add(float(step), float(value))
                last = step
                added = True
        if added and redraw:
            self.redraw()

    def clear(self) -> None:
        for series in self.series.values():
            series.clear()
        self.redraw()

    def set_view(self, smoothing: bool | None = None, log_scale: bool | None = None) -> None:
        """Turn smoothing or the log scale on or off, and redraw."""
        if smoothing is not None:
            self.smoothing = smoothing
        if log_scale is not None:
            self.log_scale = log_scale
        self.redraw()

    # -- drawing -----------------------------------------------------------------------

    def summary(self) -> str:
        """The title line (markup): the title, then each series' last value and best, or no points yet."""
        parts = [f"[b]{escape(self.title)}[/b]"]
        many = len(self.series) > 1
        word = "min" if self.lower_is_better else "max"
        for series in self.series.values():
            if not series.n or not self.values_in_title:
                continue
            label = f"[{series.style}]{escape(series.label)}[/] " if many else ""
            best = f" [dim]({word} {fmt_value(series.best[0], 3)} @{int(series.best[1])})[/dim]" if series.best else ""
            parts.append(f"{label}[b]{fmt_value(series.last[1])}[/b]{best}")
        if not any(s.n for s in self.series.values()):
            parts.append("[dim]no points yet[/dim]")
        notes = [n for n, on in (("smoothed", self.smoothing), ("log", self.log_scale)) if on]
        if notes:
            parts.append(f"[dim]({', '.join(notes)})[/dim]")
        return "  ".join(parts)

    def arrays(self, series: Series, smooth: bool, buckets: int) -> tuple[np.ndarray, np.ndarray]:
        """A series as (x, y) arrays ready to draw: smoothed or raw, log10 if the scale is log (values <= 0
        dropped), cut to `buckets` columns."""
        x = series.steps
        y = series.smooth if smooth else series.values
        if self.log_scale:
            keep = y > 0
            x, y = x[keep], np.log10(y[keep])
        return downsample(x, y, buckets)

    def redraw(self) -> None:
        """Draw every series again at the plot's current width."""
        if not self._ready:
            return
        self.query_one(".chart-title", Static).update(self.summary())
        has_points = any(s.n for s in self.series.values())
        plot = self.query_one(Plot)
        plot.display = has_points
        self.query_one(".chart-empty").display = not has_points
        plot.clear()
        if not has_points:
            return
        width = max(10, self.size.width - plot.margin_left - 2)
        buckets = width * COLUMNS_PER_CELL
        plot.set_y_formatter(Ticks(max(1, (self.size.height - 2) // 2), log=self.log_scale))
        for series in self.series.values():
            if not series.n:
                continue
            if self.smoothing:
                x, y = self.arrays(series, False, buckets)
                plot.plot(x, y, line_style=f"{series.style} dim", hires_mode=HiResMode.BRAILLE)
            x, y = self.arrays(series, self.smoothing, buckets)
            plot.plot(x, y, line_style=series.style, hires_mode=HiResMode.BRAILLE)
        self.redraws += 1
