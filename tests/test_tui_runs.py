"""Training runs in the TUI at 80x24: the new-run form, the Runs tab and the run screen, against the demo
project in a real store with real runners (a smoke run trains on the CPU in about 20 s).

The demo project is built once for the module; its CPU runner runs one job at a time, so each test
waits for its own runs to end before the next starts.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Select
from tui_pilot import drive, notes, screen_text, text, type_text, wait_for

from engine.train.presets import PRESET_TITLES
from store.db import Store, open_store
from store.models import Job
from tui.app import TunedeckApp
from tui.screens.new_run import NewRunForm
from tui.screens.project import ProjectScreen
from tui.screens.run import RunScreen
from tui.widgets.live_table import LiveTable
from tui.widgets.log_tail import LogTail, clean_line, read_log
from tui.widgets.metric_chart import MetricChart, downsample, eta_text, progress_bar
from tui.widgets.yes_no import ConfirmDialog

REPO = Path(__file__).resolve().parent.parent
RUN_TIMEOUT = 120.0


@dataclass
class Demo:
    home: Path
    store: Store
    model: str


def _status(store: Store, job_id: int) -> str:
    with store.raw() as conn:
        return conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]


def _wait_status(store: Store, job_id: int, statuses: tuple[str, ...], timeout: float = RUN_TIMEOUT) -> str:
    deadline = time.monotonic() + timeout
    while (status := _status(store, job_id)) not in statuses:
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} is still {status}")
        time.sleep(0.2)
    return status


def _stop_everything(store: Store) -> None:
    from store.jobs import request_cancel

    with store.raw() as conn:
        active = [r[0] for r in conn.execute("SELECT id FROM jobs WHERE status IN ('queued', 'running')")]
    for job_id in active:
        try:
            with store.write() as session:
                request_cancel(session, job_id)
        except Exception:
            pass  # it ended meanwhile
    for job_id in active:
        _wait_status(store, job_id, ("completed", "failed", "cancelled", "interrupted"), timeout=60)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    from engine.demo_project import ensure_demo_project

    home = tmp_path_factory.mktemp("runs") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("XDG_DATA_HOME", str(home.parent / "xdg"))
        store = open_store(home)
        result = ensure_demo_project(store)
        _wait_status(store, result["import_job_id"], ("completed",), timeout=RUN_TIMEOUT)
    yield Demo(home, store, result["model"]["path"])
    _stop_everything(store)
    store.close()


@pytest.fixture(autouse=True)
def _nothing_left_running(demo: Demo) -> Iterator[None]:
    yield
    _stop_everything(demo.store)


async def open_project(app: TunedeckApp, pilot: Pilot) -> ProjectScreen:
    await wait_for(pilot, lambda: app.screen.query("#projects") and app.screen.projects, "the projects list")
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen) and app.screen.data is not None, "project")
    await pilot.press("2")
    return app.screen  # type: ignore[return-value]


async def open_form(app: TunedeckApp, pilot: Pilot) -> NewRunForm:
    await pilot.press("n")
    await wait_for(pilot, lambda: isinstance(app.screen, NewRunForm) and app.screen.checked is not None, "the form")
    return app.screen  # type: ignore[return-value]


async def set_field(pilot: Pilot, form: NewRunForm, widget_id: str, value: str) -> None:
    box = form.query_one(f"#{widget_id}", Input)
    box.focus()
    box.clear()
    await pilot.pause()
    await type_text(pilot, value)


def run_rows(project: ProjectScreen) -> dict[str, tuple[str, ...]]:
    table = project.query_one("#runs-table", LiveTable)
    return dict(table.shown) if table.display else {}


def chart(screen: RunScreen, name: str) -> MetricChart:
    return screen.query_one(f"#chart-{name}", MetricChart)


def log_text(screen: RunScreen) -> str:
    return "\n".join(screen.query_one(LogTail).lines)


# ----------------------------------------------------------------------------- the form


def test_form_checks_fields_live_and_keeps_problems_inline(demo: Demo) -> None:
    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await open_project(app, pilot)
        form = await open_form(app, pilot)
        # The demo project starts from the smoke preset with the demo model and dataset.
        assert form.query_one("#preset", Select).value == "smoke"
        assert form.query_one("#dataset", Select).value == "demo"
        assert form.query_one("#model", Input).value == demo.model
        assert form.query_one("#f-training-max_steps", Input).value == "8"
        assert "effective batch 2" in text(app, "#messages")  # a recipe warning, live
        assert "1e-5..3e-4 for LoRA" in text(app, "#f-training-learning_rate-hint")
        # The preset's hint is whole on one row at 80 columns, for every preset.
        assert "8 steps, to check the pipeline end to end" in screen_text(app)
        width = form.query_one("#preset-hint").content_region.width
        assert all(len(title.partition(": ")[2]) <= width for title in PRESET_TITLES.values()), width

        await set_field(pilot, form, "f-training-learning_rate", "abc")
        await wait_for(pilot, lambda: "training.learning_rate: must be a number" in text(app, "#messages"), "abc")
        lr = form.query_one("#f-training-learning_rate", Input)
        assert lr.has_class("bad")
        await set_field(pilot, form, "f-training-learning_rate", "-1")
        await wait_for(pilot, lambda: "must be greater than 0 (got -1)" in text(app, "#messages"), "-1")
        form.query_one("#preset").focus()
        await pilot.press("ctrl+s")  # refused here: the form stays, the bad field gets focus
        await wait_for(pilot, lambda: "Fix the fields marked in red" in text(app, "#error"), "the refusal")
        assert isinstance(app.screen, NewRunForm) and lr.has_focus
        assert "must be greater than 0" in screen_text(app)

        await set_field(pilot, form, "f-training-learning_rate", "2e-4")
        await wait_for(pilot, lambda: not lr.has_class("bad"), "a valid rate")
        await set_field(pilot, form, "f-training-grad_accum", "8")
        await wait_for(pilot, lambda: "effective batch 16" in text(app, "#f-training-grad_accum-hint"), "batch")
        assert "effective batch" not in text(app, "#messages")
        form.query_one("#method", Select).value = "full"
        await wait_for(pilot, lambda: "5e-6..1e-4 for full" in text(app, "#f-training-learning_rate-hint"), "hint")
        await wait_for(pilot, lambda: "learning_rate: 0.0002 is outside" in text(app, "#messages"), "lr warning")

        await pilot.press("ctrl+y")  # the YAML it will save
        await wait_for(pilot, lambda: form.query_one("#yaml-view").display, "the YAML view")
        yaml_text = text(app, "#yaml-text")
        assert "method: full" in yaml_text and "grad_accum: 8" in yaml_text and "max_steps: 8" in yaml_text
        await pilot.press("escape")  # back to the fields
        await wait_for(pilot, lambda: form.query_one("#run-form").display, "the fields again")

        # A preset refills the fields; a refusal from queue_run shows in the form too.
        form.query_one("#preset", Select).value = "lora"
        await wait_for(pilot, lambda: form.query_one("#f-training-max_steps", Input).value == "-1", "lora preset")
        assert form.query_one("#method", Select).value == "lora"
        assert form.query_one("#model", Input).value == demo.model  # kept
        await set_field(pilot, form, "f-devices", "0,1")  # GPUs this machine does not have
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "devices [0, 1]: this machine has no NVIDIA GPU" in text(app, "#error"), "GPUs")
        await set_field(pilot, form, "f-devices", "")
        await set_field(pilot, form, "model", "/nowhere/model")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "no such folder" in text(app, "#error"), "queue_run's refusal")
        assert isinstance(app.screen, NewRunForm)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "cancel")

    drive(demo.store, scenario)
    with demo.store.raw() as conn:
        assert conn.execute("SELECT count(*) FROM jobs WHERE kind = 'train'").fetchone()[0] == 0


# ----------------------------------------------------------------------------- a run from the form to the end


def test_smoke_run_from_the_form_to_its_charts_log_and_config(demo: Demo) -> None:
    queued: list[int] = []

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        project = await open_project(app, pilot)
        assert "No runs in this project yet" in text(app, "#runs-empty")
        form = await open_form(app, pilot)
        await set_field(pilot, form, "f-training-max_steps", "6")
        await set_field(pilot, form, "f-training-eval_steps", "3")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "the form to close", timeout=15)
        await wait_for(pilot, lambda: len(run_rows(project)) == 1, "the run in the Runs tab")
        key = next(iter(run_rows(project)))
        queued.append(int(key))
        assert run_rows(project)[key][1] == "lora" and run_rows(project)[key][8] == "cpu"

        await pilot.press("enter")  # open it while it is queued or running: it fills in live
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen")
        screen: RunScreen = app.screen  # type: ignore[assignment]
        # A run from a warm engine can go from queued to completed between two of the screen's reads.
        await wait_for(pilot, lambda: screen.detail is not None and screen.detail.status in ("running", "completed"),
                       "running", timeout=RUN_TIMEOUT)  # fmt: skip
        await wait_for(pilot, lambda: screen.detail.status == "completed", "completed", timeout=RUN_TIMEOUT)
        await wait_for(pilot, lambda: len(chart(screen, "loss").points) == 6, "six loss points")
        assert [s for s, _ in chart(screen, "loss").points] == [1, 2, 3, 4, 5, 6]
        assert len(chart(screen, "learning_rate").points) == 6
        assert {3, 6} <= {s for s, _ in chart(screen, "loss").series["eval_loss"].points}  # (and maybe a baseline at 0)
        header = text(app, "#run-header")
        assert "completed" in header and "step 6/6" in header and "100%" in header and "loss" in header
        assert "loss  train " in screen_text(app) and " eval " in screen_text(app)  # the charts tab, with its labels
        # The charts use the height there is at 80x24: loss on top, learning rate and grad norm under it.
        assert chart(screen, "loss").size.height >= 9 and chart(screen, "grad_norm").size.height >= 5
        await pilot.press("s", "l")
        assert chart(screen, "loss").smoothing and chart(screen, "grad_norm").log_scale
        assert "(smoothed, log)" in chart(screen, "loss").summary()
        metrics = dict(screen.query_one("#metrics-body", LiveTable).shown)
        assert {"loss", "eval_loss", "learning_rate", "eta_s"} <= set(metrics)
        await pilot.press("3")
        await wait_for(pilot, lambda: f"job {key} completed" in log_text(screen), "the end of the log")
        assert screen.query_one(LogTail).following and "following" in text(app, "#log-status")
        await pilot.press("4")
        await wait_for(pilot, lambda: "max_steps: 6" in screen_text(app), "the config tab")
        assert "max_steps: 6" in screen.config_shown and "eval_steps: 3" in screen.config_shown

        # A completed run offers no cancel, resume or retry: not in the footer, and the keys do nothing.
        footer = screen_text(app).splitlines()[-1]
        assert "Duplicate" in footer and "Cancel run" not in footer and "Resume" not in footer, footer
        assert not screen.check_action("resume_run", ()) and not screen.check_action("cancel_run", ())
        await pilot.press("r")
        await pilot.pause(0.3)
        assert screen.detail.status == "completed" and "queued again" not in notes(app)
        await pilot.press("e")  # duplicate and edit: the form, filled with this run's config
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunForm) and app.screen.checked, "the copy's form")
        copy: NewRunForm = app.screen  # type: ignore[assignment]
        assert copy.query_one("#f-training-max_steps", Input).value == "6"
        assert copy.query_one("#f-training-eval_steps", Input).value == "3"
        assert copy.query_one("#preset", Select).value is Select.NULL
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, "back to the run")
        screen._copied(int(key))  # as when the copy is queued: its run screen replaces this one
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen is not screen, "the copy")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "the project")
        await wait_for(pilot, lambda: run_rows(project)[key][3] == "completed", "completed in the Runs tab")
        row = run_rows(project)[key]
        assert row[4] == "6/6" and "100%" in row[5] and row[6] != "-" and row[7] == "-"

    drive(demo.store, scenario)
    assert _status(demo.store, queued[0]) == "completed"


# ----------------------------------------------------------------------------- from outside, reopened, cancelled


def test_cli_run_shows_live_and_again_in_a_new_app_then_cancels(demo: Demo) -> None:
    seen: dict[str, int] = {}

    async def watch(app: TunedeckApp, pilot: Pilot) -> None:
        project = await open_project(app, pilot)
        before = set(run_rows(project))
        cli = subprocess.run(
            [sys.executable, "-m", "cli", "--home", str(demo.home), "run", "new", "demo", "--preset", "smoke",
             "--set", "max_steps=5000", "--set", "eval_steps=0", "--set", "save_steps=1000"],
            capture_output=True, text=True, timeout=60, cwd=REPO, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        job_id = int(cli.stdout.strip())
        seen["job"] = job_id
        key = str(job_id)
        await wait_for(pilot, lambda: key in run_rows(project), "the CLI's run, without a key", timeout=10)
        assert key not in before
        await wait_for(pilot, lambda: run_rows(project)[key][3] == "running", "running", timeout=RUN_TIMEOUT)
        await wait_for(pilot, lambda: run_rows(project)[key][6] != "-", "its loss", timeout=30)
        row = run_rows(project)[key]
        assert row[4].endswith("/5000") and row[7] not in ("-", "") and row[8] == "cpu"
        seen["step"] = int(row[4].split("/")[0])

    drive(demo.store, watch)

    other = open_store(demo.home)  # a new TUI on the same home while the run goes on

    async def reopen(app: TunedeckApp, pilot: Pilot) -> None:
        project = await open_project(app, pilot)
        key = str(seen["job"])
        await wait_for(pilot, lambda: key in run_rows(project), "the run")
        assert run_rows(project)[key][3] == "running"
        table = project.query_one("#runs-table", LiveTable)
        table.move_cursor(row=[k for k, _ in table.shown].index(key))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen")
        screen: RunScreen = app.screen  # type: ignore[assignment]
        await wait_for(pilot, lambda: screen.detail is not None and screen.detail.status == "running", "running")
        first = screen.detail.step
        assert first >= seen["step"]
        await wait_for(pilot, lambda: screen.detail.step > first + 1, "the step advancing", timeout=30)
        await wait_for(pilot, lambda: len(chart(screen, "loss").points) > 2, "loss points", timeout=30)
        assert "running" in text(app, "#run-header") and "ETA" in text(app, "#run-header")
        assert f"job {key} (train) started" in log_text(screen)  # the log from its start

        # The log follows its end; scrolled up it stays put while lines arrive; end follows again.
        await pilot.press("3")
        log = screen.query_one(LogTail)
        await wait_for(pilot, lambda: log.line_count > log.size.height + 2, "a log taller than the tab", timeout=30)
        assert log.following and log.scroll_y == log.max_scroll_y > 0
        await pilot.press("home")
        await wait_for(pilot, lambda: "paused" in text(app, "#log-status"), "paused")
        count = log.line_count
        await wait_for(pilot, lambda: log.line_count > count + 1, "more lines", timeout=20)
        assert log.scroll_y == 0 and not log.following
        await pilot.press("end")
        await wait_for(pilot, lambda: "following" in text(app, "#log-status"), "following again")
        count = log.line_count
        await wait_for(pilot, lambda: log.line_count > count + 1, "more lines", timeout=20)
        assert log.scroll_y == log.max_scroll_y

        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: app.screen is screen, "back on the run")
        await wait_for(pilot, lambda: screen.detail.status == "cancelled", "cancelled", timeout=60)
        assert "cancelled" in text(app, "#run-header")
        await wait_for(pilot, lambda: f"job {key} cancelled" in log_text(screen), "the log's last line")

    try:
        drive(other, reopen)
    finally:
        other.close()
    assert _status(demo.store, seen["job"]) == "cancelled"


# ----------------------------------------------------------------------------- stale engines, resume and retry


def test_stale_run_shows_interrupted_and_resume_and_retry_requeue_it(demo: Demo) -> None:
    with demo.store.write() as session:
        job = Job(project_id=1, kind="train", name="ghost", status="running", step=3, total_steps=10,
                  heartbeat_at=time.time() - 3600, slot="cpu-test")  # fmt: skip
        session.add(job)
        session.flush()
        job_id = job.id
    key = str(job_id)

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        project = await open_project(app, pilot)
        await wait_for(pilot, lambda: key in run_rows(project), "the ghost run")
        await wait_for(pilot, lambda: run_rows(project)[key][3] == "interrupted", "reaped", timeout=10)
        table = project.query_one("#runs-table", LiveTable)
        table.move_cursor(row=[k for k, _ in table.shown].index(key))
        await wait_for(pilot, lambda: "no heartbeat" in text(app, "#runs-detail"), "the reason")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.detail, "the run screen")
        screen: RunScreen = app.screen  # type: ignore[assignment]
        assert "interrupted" in text(app, "#run-header") and "no heartbeat" in text(app, "#run-header")
        await pilot.press("r")
        await wait_for(pilot, lambda: "queued again from its last checkpoint" in notes(app), "resumed")
        await wait_for(pilot, lambda: screen.detail.status != "interrupted", "requeued")
        # Its runner slot has no config to train with: it fails, and can then be retried from the start.
        await wait_for(pilot, lambda: screen.detail.status == "failed", "failed", timeout=RUN_TIMEOUT)
        await pilot.press("R")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the retry confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: "queued again from the start" in notes(app), "retried")
        with demo.store.raw() as conn:
            assert conn.execute("SELECT step FROM jobs WHERE id = ?", (job_id,)).fetchone()[0] == 0
        await wait_for(pilot, lambda: screen.detail.status == "failed" and screen.detail.step == 0, "failed again",
                       timeout=RUN_TIMEOUT)  # fmt: skip
        assert (demo.store.home / "jobs" / key / "job.log").is_file()
        await pilot.press("x")  # ended: it can be deleted, after a confirmation
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the delete confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: f"Run {key} deleted" in notes(app), "deleted")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "back to the project")
        await wait_for(pilot, lambda: key not in run_rows(app.screen), "the row gone")  # type: ignore[arg-type]
        assert not (demo.store.home / "jobs" / key).exists()

    drive(demo.store, scenario)


# ----------------------------------------------------------------------------- pieces


def test_log_tail_reads_complete_lines_by_offset(tmp_path: Path) -> None:
    path = tmp_path / "job.log"
    path.write_bytes(b"one\nbar 10%\rbar 100%\n\x1b[1mbold\x1b[0m\npartial")
    chunk = read_log(path, 0)
    assert chunk.lines == ["one", "bar 100%", "bold"]
    assert chunk.offset == len(b"one\nbar 10%\rbar 100%\n\x1b[1mbold\x1b[0m\n")
    with path.open("ab") as fh:
        fh.write(b" line\nnext\n")
    chunk = read_log(path, chunk.offset)
    assert chunk.lines == ["partial line", "next"]
    assert read_log(path, chunk.offset).lines == []
    path.write_bytes(b"new\n")  # replaced by a shorter file: start over
    again = read_log(path, chunk.offset)
    assert again.reset and again.lines == ["new"]
    assert read_log(tmp_path / "none.log", 0).missing
    assert clean_line("a\rb\r") == "b"
    assert progress_bar(0.52, 8) == "████▏░░░  52%"
    assert progress_bar(1.0, 5) == "█████ 100%" and progress_bar(None, 5) == "░░░░░   0%"
    assert [eta_text(s) for s in (None, 5, 192, 3900, 90000)] == ["-", "5s", "3m12s", "1h05m", "1d01h"]


def test_downsample_keeps_each_columns_min_and_max() -> None:
    import numpy as np

    x = np.arange(1, 100_001, dtype=float)
    y = np.sin(x / 1000.0)
    y[54_321] = 9.0  # one spike among 100,000 points
    dx, dy = downsample(x, y, 150)
    assert len(dx) == len(dy) <= 300
    assert dy.max() == 9.0 and abs(dy.min() - y.min()) < 1e-12  # nothing lost at the extremes
    assert np.all(np.diff(dx) >= 0)  # still in step order
    short_x, short_y = downsample(x[:50], y[:50], 150)
    assert len(short_x) == 50 and np.array_equal(short_y, y[:50])  # short series come back as they are


def test_config_tab_names_the_speed_choices_the_engine_made() -> None:
    """The engine records its speed choices (engine.train.speed) in the result as the run starts; the Config tab
    shows them, and shows nothing for a run that has not chosen yet."""
    from store.views import RunDetail
    from tui.widgets.run_config import config_text

    def detail(result: dict) -> RunDetail:
        return RunDetail(id=1, project="p", kind="train", name="r", status="running", step=3, total_steps=10,
                         progress=0.3, error=None, log_path=None, slot="cpu", cancel_requested=False,
                         config={"run_yaml": "name: r\n"}, result=result, created_at=0.0, started_at=0.0,
                         finished_at=None, heartbeat_at=None, updated_at=0.0)

    chosen = {"attn_implementation": "sdpa", "optimizer": "adamw_torch", "packing": True, "liger_kernel": False,
              "torch_compile": False}
    text = config_text(detail(chosen))
    assert "# chosen: attention sdpa, optimizer adamw_torch, packing on, liger off, torch.compile off" in text
    assert "chosen:" not in config_text(detail({}))
