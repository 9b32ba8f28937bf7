"""Two or more training runs side by side: one metric at a time (train loss, eval loss, learning rate, grad
norm; m switches) with a line per run on one chart (textual-plot, through MetricChart: axes, smoothing
with s, log scale with l), a legend with each run's last and best value, and the runs' config diff.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import partial
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from store.db import Store
from store.views import CompareRun, compare_runs
from tui.widgets.formatting import clip
from tui.widgets.live_table import KeyTable
from tui.widgets.metric_chart import STYLES, MetricChart, fmt_value

CURVES = [("loss", "train loss"), ("eval_loss", "eval loss"), ("learning_rate", "learning rate"),
          ("grad_norm", "grad norm")]  # fmt: skip
LOWER_IS_BETTER = {"loss": True, "eval_loss": True, "learning_rate": False, "grad_norm": True}
MARKERS = ["●", "■", "▲", "◆", "✚", "✖", "○", "□"]
COLOURS = STYLES
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


def legend_line(index: int, run: CompareRun, points: list[tuple[int, float]], lower_is_better: bool = True) -> str:
    """`● 3 lora a  last 0.51 @30 · min 0.5 @28`, or that the run has no points of this metric."""
    head = f"{marker(index)} {escape(clip(run_label(run), 24))}"
    if not points:
        return f"{head}  [dim]no points[/dim]"
    step, value = points[-1]
    best_step, best = (min if lower_is_better else max)(points, key=lambda p: p[1])
    word = "min" if lower_is_better else "max"
    return f"{head}  last [b]{fmt_value(value)}[/b] @{step} · {word} {fmt_value(best)} @{best_step}"


def legend_text(name: str, runs: Sequence[CompareRun]) -> str:
    """One metric's legend: a line per run (markup)."""
    lower = LOWER_IS_BETTER.get(name, True)
    return "\n".join(legend_line(i, run, run.series.get(name, []), lower) for i, run in enumerate(runs))


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
    """The runs' header over a Curves tab (one metric, a line per run) and a Config diff tab."""

    HELP_TITLE = "Compare runs"
    AUTO_FOCUS = ""
    BINDINGS = [
        Binding("escape,backspace", "back", "Back", id="compare.back"),
        Binding("m", "next_metric", "Next metric", id="compare.next_metric"),
        Binding("s", "toggle_smoothing", "Smooth", id="compare.toggle_smoothing"),
        Binding("l", "toggle_log", "Log scale", id="compare.toggle_log"),
        Binding("1", "show_tab('curves')", "Curves tab", show=False, id="compare.show_tab_curves"),
        Binding("2", "show_tab('diff')", "Config diff tab", show=False, id="compare.show_tab_diff"),
    ]

    def __init__(self, job_ids: Sequence[int]) -> None:
        super().__init__()
        self.job_ids = [int(i) for i in job_ids]
        self.runs: list[CompareRun] | None = None
        self.diff: list[tuple[str, list[str]]] = []
        self.same = 0
        self._diff_shown: list[tuple[str, list[str]]] | None = None
        self.metric = 0  # index into CURVES of the metric on the chart

    @property
    def store(self) -> Store:
        return self.app.store  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        ids = ", ".join(str(i) for i in self.job_ids)
        yield Static(f"[b]tunedeck[/b] · compare runs {ids}", id="topbar")
        yield Static("Loading…", id="compare-header")
        with TabbedContent(id="compare-tabs", initial="curves"):
            with TabPane("1 Curves", id="curves"):
                with Vertical(id="curves-body"):
                    yield MetricChart(CURVES[0][1], values_in_title=False, id="curve-chart")
                    yield Static("", id="curve-legend")
            with TabPane("2 Config diff", id="diff"):
                yield Static("", id="diff-summary")
                yield KeyTable(id="diff-table", cursor_type="row", zebra_stripes=True)  # j/k move
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
        self._show_curve()
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

    def _show_curve(self) -> None:
        """The current metric: a line per run on the chart, and the legend under it."""
        runs = self.runs or []
        name, title = CURVES[self.metric]
        chart = self.query_one("#curve-chart", MetricChart)
        chart.title = f"{title} ({self.metric + 1}/{len(CURVES)}, m: next)"
        chart.lower_is_better = LOWER_IS_BETTER.get(name, True)
        chart.replace([(str(run.id), run_label(run), COLOURS[i % len(COLOURS)], run.series.get(name, []))
                       for i, run in enumerate(runs)])  # fmt: skip
        self.query_one("#curve-legend", Static).update(legend_text(name, runs))

    def action_next_metric(self) -> None:
        """m: the next metric on the chart."""
        self.metric = (self.metric + 1) % len(CURVES)
        self._show_curve()

    def action_toggle_smoothing(self) -> None:
        chart = self.query_one("#curve-chart", MetricChart)
        chart.set_view(smoothing=not chart.smoothing)

    def action_toggle_log(self) -> None:
        chart = self.query_one("#curve-chart", MetricChart)
        chart.set_view(log_scale=not chart.log_scale)

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        target = "#diff-table" if event.pane.id == "diff" else "#curves-body"
        self.call_after_refresh(self.query_one(target).focus)

    def action_show_tab(self, tab_id: str) -> None:
        self.query_one("#compare-tabs", TabbedContent).active = tab_id

    def action_back(self) -> None:
        self.dismiss()
