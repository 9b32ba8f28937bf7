"""Two or more runs side by side: train and eval loss overlaid on one text plot each, and their config diff.

No plotting library: each curve is drawn on a grid of character cells in its own colour and marker;
x is the step scaled to the longest run, y the value scaled to the min and max over all the runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from store.db import Store
from store.views import CompareRun, compare_runs
from tui.screens._common import clip
from tui.widgets.metric_chart import fmt_value

PLOT_WIDTH = 60
PLOT_HEIGHT = 10
AXIS = 8  # the y labels' width
CURVES = [("loss", "train loss"), ("eval_loss", "eval loss")]
MARKERS = ["●", "■", "▲", "◆", "✚", "✖", "○", "□"]
COLOURS = ["cyan", "magenta", "yellow", "green", "red", "bright_blue", "white", "bright_magenta"]
ACTIVE = ("queued", "running")
REFRESH_S = 2.0  # re-read while one of the runs is still going
MISSING = "-"


def marker(index: int) -> str:
    """Run number `index`'s marker character as coloured markup."""
    return f"[{COLOURS[index % len(COLOURS)]}]{MARKERS[index % len(MARKERS)]}[/]"


def run_label(run: CompareRun) -> str:
    """`3 lora name`: the id, the method (or kind) and the name."""
    cfg = run.config.get("run") if isinstance(run.config.get("run"), dict) else {}
    method = str(cfg.get("method") or run.kind)
    if cfg.get("objective") == "dpo":
        method = "dpo"
    return f"{run.id} {method} {run.name}".rstrip()


def join(index: int) -> str:
    """A cell on the line between two of run `index`'s points: a dot in its colour."""
    return f"[{COLOURS[index % len(COLOURS)]}]·[/]"


# ----------------------------------------------------------------------------- the plot


def plot_lines(series: Sequence[list[tuple[int, float]]], width: int = PLOT_WIDTH, height: int = PLOT_HEIGHT,
               ) -> list[str]:  # fmt: skip
    """Curves overlaid on a `width` x `height` grid with a y axis on the left and the step range below (markup).

    Run i's points are drawn with marker(i), joined by dots in its colour across the columns between them. Empty
    when no run has points.
    """
    values = [v for points in series for _, v in points]
    if not values:
        return []
    top, bottom = max(values), min(values)
    span = (top - bottom) or 1.0
    max_step = max(s for points in series for s, _ in points)
    min_step = min(s for points in series for s, _ in points)
    x_span = (max_step - min_step) or 1
    grid: list[list[tuple[int, bool] | None]] = [[None] * width for _ in range(height)]  # (run, a point?)

    def cell(step: float, value: float) -> tuple[int, int]:
        x = round((step - min_step) / x_span * (width - 1))
        y = round((value - bottom) / span * (height - 1))
        return x, height - 1 - y

    for index, points in enumerate(series):
        previous: tuple[int, int] | None = None
        for step, value in points:
            x, y = cell(step, value)
            if previous is not None and x - previous[0] > 1:  # join the columns between two points
                x0, y0 = previous
                for xi in range(x0 + 1, x):
                    yi = round(y0 + (y - y0) * (xi - x0) / (x - x0))
                    if grid[yi][xi] is None:
                        grid[yi][xi] = (index, False)
            grid[y][x] = (index, True)
            previous = (x, y)
    lines = []
    for row, cells in enumerate(grid):
        label = fmt_value(top) if row == 0 else fmt_value(bottom) if row == height - 1 else ""
        tick = "┤" if label else "│"
        body = "".join(" " if c is None else marker(c[0]) if c[1] else join(c[0]) for c in cells)
        lines.append(f"[dim]{label:>{AXIS}}{tick}[/dim]{body}")
    first, last = str(min_step), str(max_step)
    lines.append(f"[dim]{'':>{AXIS}}└{'─' * width}[/dim]")
    lines.append(f"[dim]{'':>{AXIS}} {first}{'step'.center(width - len(first) - len(last))}{last}[/dim]")
    return lines


def legend_line(index: int, run: CompareRun, points: list[tuple[int, float]]) -> str:
    """`● 3 lora a  last 0.51 @30 · min 0.5 @28`, or that the run has no points of this metric."""
    head = f"{marker(index)} {escape(clip(run_label(run), 24))}"
    if not points:
        return f"{head}  [dim]no points[/dim]"
    step, value = points[-1]
    best_step, best = min(points, key=lambda p: p[1])
    return f"{head}  last [b]{fmt_value(value)}[/b] @{step} · min {fmt_value(best)} @{best_step}"


def curve_text(title: str, name: str, runs: Sequence[CompareRun]) -> str:
    """One metric's chart: its title, the overlaid plot and the legend (markup)."""
    series = [run.series.get(name, []) for run in runs]
    lines = [f"[b]{escape(title)}[/b]"]
    plot = plot_lines(series)
    lines.extend(plot or ["[dim]no points in any run yet[/dim]"])
    lines.extend(legend_line(i, run, points) for i, (run, points) in enumerate(zip(runs, series, strict=True)))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the config diff


def flatten(value: Any, prefix: str = "") -> dict[str, str]:
    """A nested config as {dotted.key: value as text}; lists and scalars are leaves (JSON text but strings)."""
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for key, sub in value.items():
            out.update(flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        if not value and prefix:
            out[prefix] = "{}"
        return out
    if isinstance(value, str):
        return {prefix: value}
    return {prefix: json.dumps(value)}


def config_diff(configs: Sequence[dict[str, Any]]) -> tuple[list[tuple[str, list[str]]], int]:
    """The keys whose values differ across `configs` (a key one lacks counts as differing), each with every
    config's value (MISSING where absent), sorted by key; and how many keys are the same in all."""
    flat = [flatten(c) for c in configs]
    keys = sorted(set().union(*flat)) if flat else []
    rows = []
    same = 0
    for key in keys:
        values = [f.get(key, MISSING) for f in flat]
        present = [key in f for f in flat]
        if all(present) and len(set(values)) == 1:
            same += 1
        else:
            rows.append((key, values))
    return rows, same


def run_config(run: CompareRun) -> dict[str, Any]:
    cfg = run.config.get("run")
    return cfg if isinstance(cfg, dict) else {}


# ----------------------------------------------------------------------------- the screen


class CompareScreen(Screen[None]):
    """The runs' header over a Curves tab (train and eval loss overlaid) and a Config diff tab."""

    HELP_TITLE = "Compare runs"
    AUTO_FOCUS = ""
    BINDINGS = [
        Binding("escape,backspace", "back", "Back"),
        Binding("1", "show_tab('curves')", "Curves tab", show=False),
        Binding("2", "show_tab('diff')", "Config diff tab", show=False),
    ]

    def __init__(self, job_ids: Sequence[int]) -> None:
        super().__init__()
        self.job_ids = [int(i) for i in job_ids]
        self.runs: list[CompareRun] | None = None
        self.diff: list[tuple[str, list[str]]] = []
        self.same = 0
        self._diff_shown: list[tuple[str, list[str]]] | None = None

    @property
    def store(self) -> Store:
        return self.app.store  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        ids = ", ".join(str(i) for i in self.job_ids)
        yield Static(f"[b]tunedeck[/b] · compare runs {ids}", id="topbar")
        yield Static("Loading…", id="compare-header")
        with TabbedContent(id="compare-tabs", initial="curves"):
            with TabPane("1 Curves", id="curves"):
                with VerticalScroll(id="curves-body", classes="tab-body"):
                    for name, _ in CURVES:
                        yield Static("", id=f"curve-{name}", classes="curve")
            with TabPane("2 Config diff", id="diff"):
                yield Static("", id="diff-summary")
                yield DataTable(id="diff-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#curves-body").focus()
        self.reload()

    def reload(self) -> None:
        self.run_worker(partial(self._read, self.store, self.job_ids), group="load", thread=True, exclusive=True,
                        exit_on_error=False)  # fmt: skip

    @staticmethod
    def _read(store: Store, job_ids: list[int]) -> list[CompareRun]:
        with store.raw() as conn:
            return compare_runs(conn, job_ids, tuple(name for name, _ in CURVES))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "load":
            return
        if event.state == WorkerState.SUCCESS:
            self.runs = event.worker.result
            self._show()
            if any(run.status in ACTIVE for run in self.runs):
                self.set_timer(REFRESH_S, self.reload)
        elif event.state == WorkerState.ERROR:
            self.query_one("#compare-header", Static).update(
                f"[red]Could not read the runs: {escape(str(event.worker.error))}[/red]")

    def _show(self) -> None:
        runs = self.runs or []
        header = []
        for i, run in enumerate(runs):
            losses = run.series.get("loss") or []
            final = fmt_value(losses[-1][1]) if losses else "-"
            header.append(f"{marker(i)} {escape(clip(run_label(run), 30))} · {run.status} · step {run.step}"
                          f" · final loss [b]{final}[/b]")  # fmt: skip
        self.query_one("#compare-header", Static).update("\n".join(header))
        for name, title in CURVES:
            self.query_one(f"#curve-{name}", Static).update(curve_text(title, name, runs))
        self.diff, self.same = config_diff([run_config(run) for run in runs])
        noun = "key differs" if len(self.diff) == 1 else "keys differ"
        self.query_one("#diff-summary", Static).update(
            f"{len(self.diff)} {noun} · {self.same} identical (hidden)" if self.diff
            else f"The configs are the same ({self.same} keys).")  # fmt: skip
        if self.diff != self._diff_shown:
            self._diff_shown = self.diff
            table = self.query_one("#diff-table", DataTable)
            table.clear(columns=True)
            table.add_column("Key", key="key")
            for i, run in enumerate(runs):
                table.add_column(f"{MARKERS[i % len(MARKERS)]} run {run.id}", key=str(run.id))
            for key, values in self.diff:
                table.add_row(escape(key), *(escape(clip(v, 24)) for v in values), key=key)
            table.display = bool(self.diff)

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        target = "#diff-table" if event.pane.id == "diff" else "#curves-body"
        self.call_after_refresh(self.query_one(target).focus)

    def action_show_tab(self, tab_id: str) -> None:
        self.query_one("#compare-tabs", TabbedContent).active = tab_id

    def action_back(self) -> None:
        self.dismiss()
