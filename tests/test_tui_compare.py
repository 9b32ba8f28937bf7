"""Comparing runs at 80x24: space marks runs on the Runs tab, C opens the compare view (a chart with a line
per run, one metric at a time; config diff). The runs are job and metric rows written straight into a real
store (no training)."""

from __future__ import annotations

import json
import time
from typing import Any

from textual.pilot import Pilot
from textual.widgets import DataTable
from tui_pilot import drive, notes, screen_text, text, wait_for

from store.db import Store
from store.projects import create_project
from store.views import CompareRun
from tui.app import TunedeckApp
from tui.screens.compare import CompareScreen, config_diff, flatten, legend_line
from tui.screens.project import ProjectScreen
from tui.widgets.live_table import LiveTable
from tui.widgets.metric_chart import MetricChart


def base_config(lr: float, r: int) -> dict[str, Any]:
    return {
        "model": "/models/demo-llama",
        "dataset": "words",
        "objective": "sft",
        "method": "lora",
        "training": {"learning_rate": lr, "epochs": 1, "batch_size": 2, "max_steps": 30},
        "lora": {"r": r, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]},
    }


def add_run(store: Store, project_id: int, name: str, run: dict[str, Any], losses: list[float],
            evals: list[float]) -> int:  # fmt: skip
    now = time.time()
    config = json.dumps({"run": run, "run_yaml": json.dumps(run)})
    with store.raw() as conn:
        cursor = conn.execute(
            "INSERT INTO jobs (project_id, kind, name, status, config, progress, step, total_steps, created_at, "
            "updated_at) VALUES (?, 'train', ?, 'completed', ?, 1.0, ?, ?, ?, ?)",
            (project_id, name, config, 10 * len(losses), 10 * len(losses), now, now),
        )
        job_id = int(cursor.lastrowid)
        rows = [(job_id, 10 * (i + 1), "loss", v, now) for i, v in enumerate(losses)]
        rows += [(job_id, 20 * (i + 1), "eval_loss", v, now) for i, v in enumerate(evals)]
        conn.executemany("INSERT INTO metrics (job_id, step, name, value, created_at) VALUES (?, ?, ?, ?, ?)", rows)
    return job_id


def demo_runs(store: Store) -> list[int]:
    with store.write() as session:
        pid = create_project(session, "alpha").id
    with store.raw() as conn:  # a dataset, so the Datasets tab has a table and the focus follows tab switches
        conn.execute("INSERT INTO datasets (project_id, name, created_at) VALUES (?, 'words', ?)", (pid, time.time()))
    return [
        add_run(store, pid, "base", base_config(2e-4, 8), [2.5, 1.9, 1.4], [2.0]),
        add_run(store, pid, "fast", base_config(1e-3, 16), [2.4, 1.2, 0.7, 0.61], [1.5, 0.9]),
        add_run(store, pid, "third", base_config(2e-4, 8), [2.6, 2.2], []),
    ]


async def open_runs_tab(app: TunedeckApp, pilot: Pilot, rows: int) -> ProjectScreen:
    await wait_for(pilot, lambda: app.screen.query("#projects"), "the projects list")
    await wait_for(pilot, lambda: len(app.screen.query_one("#projects", LiveTable).shown) == 1, "the project row")
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen) and app.screen.data is not None, "project")
    await pilot.press("2")
    screen = app.screen
    assert isinstance(screen, ProjectScreen)
    await wait_for(pilot, lambda: len(screen.query_one("#runs-table", LiveTable).shown) == rows, "the run rows")
    await wait_for(pilot, lambda: screen.focused is screen.query_one("#runs-table"), "the runs table focused")
    return screen


def test_mark_two_runs_and_compare(store: Store) -> None:
    base, fast, third = demo_runs(store)

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        screen = await open_runs_tab(app, pilot, 3)
        table = screen.query_one("#runs-table", LiveTable)
        assert table.current_key == str(third)  # newest first
        await pilot.press("down")  # fast
        await pilot.press("space")
        await wait_for(pilot, lambda: table.shown[1][1][0].startswith("[b yellow]●"), "the mark in the row")
        assert "1 marked" in text(app, "#runs-detail")
        await pilot.press("C")  # one marked: not enough
        await wait_for(pilot, lambda: "Mark two or more runs with space" in notes(app), "the notice")
        assert app.screen is screen
        await pilot.press("down", "space")  # base
        await wait_for(pilot, lambda: "2 marked" in text(app, "#runs-detail"), "two marked")
        await pilot.press("up", "up", "space", "space")  # third marked, then unmarked
        await wait_for(pilot, lambda: screen.marked == [str(fast), str(base)], "third unmarked again")
        await pilot.press("C")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.runs is not None, "compare")
        compare = app.screen
        assert compare.job_ids == [fast, base]

        header = text(app, "#compare-header")
        assert f"● {fast} lora fast · completed" in header and "final loss 0.61" in header
        assert f"■ {base} lora base · completed" in header and "final loss 1.4" in header
        chart = compare.query_one("#curve-chart", MetricChart)
        legend = text(app, "#curve-legend")
        assert "train loss" in chart.title
        assert f"● {fast} lora fast  last 0.61 @40 · min 0.61 @40" in legend
        assert f"■ {base} lora base  last 1.4 @30 · min 1.4 @30" in legend
        # A line per run on one chart with axes: each run's points, in the run's colour.
        assert {name: s.points for name, s in chart.series.items()} == {
            str(fast): [(10, 2.4), (20, 1.2), (30, 0.7), (40, 0.61)], str(base): [(10, 2.5), (20, 1.9), (30, 1.4)]}
        assert [s.style for s in chart.series.values()] == ["cyan", "magenta"]
        await wait_for(pilot, lambda: "┫" in screen_text(app) and "━━━" in screen_text(app), "the axes")
        shown = screen_text(app)
        assert "train loss (1/4, m: next)" in shown and "2.5 ┫" in shown  # title, y ticks
        assert any(ch in shown for ch in "⠉⠒⣀⠑⠢⠤⡀⢄")  # braille line cells on screen
        await pilot.press("m")  # the next metric: eval loss
        await wait_for(pilot, lambda: "eval loss" in chart.title, "eval loss")
        legend = text(app, "#curve-legend")
        assert f"● {fast} lora fast  last 0.9 @40" in legend and f"■ {base} lora base  last 2 @20" in legend
        assert chart.series[str(fast)].points == [(20, 1.5), (40, 0.9)]
        await pilot.press("s", "l")  # smoothing and log scale, on the chart only
        await wait_for(pilot, lambda: chart.smoothing and chart.log_scale, "smoothed, log")
        assert "(smoothed, log)" in chart.summary()
        await pilot.press("m", "m", "m")  # round to train loss again
        await wait_for(pilot, lambda: "train loss" in chart.title, "back to train loss")

        await pilot.press("2")
        diff = compare.query_one("#diff-table", DataTable)
        await wait_for(pilot, lambda: compare.focused is diff, "the diff table focused")
        rows = {str(diff.get_row_at(i)[0]): [str(c) for c in diff.get_row_at(i)[1:]] for i in range(diff.row_count)}
        assert rows == {"lora.r": ["16", "8"], "training.learning_rate": ["0.001", "0.0002"]}
        assert [str(c.label) for c in diff.columns.values()] == ["Key", f"● run {fast}", f"■ run {base}"]
        assert "2 keys differ · 10 identical" in text(app, "#diff-summary")

        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, "back on the project")
        assert screen.marked == [str(fast), str(base)]

    drive(store, scenario)


def test_compare_needs_two_marked_runs(store: Store) -> None:
    demo_runs(store)

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        screen = await open_runs_tab(app, pilot, 3)
        await pilot.press("C")
        await wait_for(pilot, lambda: "Mark two or more runs with space" in notes(app), "the notice")
        assert app.screen is screen and screen.marked == []

    drive(store, scenario)


def test_config_diff_and_plot_helpers() -> None:
    a = {"training": {"learning_rate": 1e-4, "epochs": 1}, "lora": {"r": 8}, "tags": ["x"]}
    b = {"training": {"learning_rate": 1e-4, "epochs": 2}, "lora": {"r": 8, "alpha": 16}, "tags": ["x"]}
    assert flatten(a) == {"training.learning_rate": "0.0001", "training.epochs": "1", "lora.r": "8", "tags": '["x"]'}
    rows, same = config_diff([a, b])
    assert rows == [("lora.alpha", ["-", "16"]), ("training.epochs", ["1", "2"])]
    assert same == 3
    assert legend_line(0, CompareRun(1, "train", "a", "completed", 2, 2, {}, {}), []).endswith("no points[/dim]")
