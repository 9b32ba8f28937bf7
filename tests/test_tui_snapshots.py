"""SVG snapshots of the main screens at 80x24 (pytest-textual-snapshot): a layout regression fails here.

The store holds fixed rows (ids, names, metrics, log lines) stamped at fixed times in early 2024, in UTC,
so every "when" reads as a date; no job is running (no ETA, no heartbeat), the GPU sampler is a fake that
finds no driver and the machine's load line is fixed. Update after an intended change with
`pytest tests/test_tui_snapshots.py --snapshot-update`, and look at the SVGs before committing them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gpu_fakes import FakeNvml
from textual.pilot import Pilot
from tui_pilot import wait_for

from engine.gpu.nvml import Sampler
from store.db import Store
from tui.app import TunedeckApp

T0 = 1_704_067_200.0  # 2024-01-01 00:00 UTC
DAY = 86_400.0
SIZE = (80, 24)


def _insert(conn, table: str, **values: object) -> int:
    cols = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    return int(conn.execute(f"INSERT INTO {table} ({cols}) VALUES ({marks})", tuple(values.values())).lastrowid)


def fill(store: Store) -> None:
    """Two projects; in alpha a dataset, two runs (one with metrics), a merge, a queued convert, a failed
    eval and an artifact; the merge has a log."""
    run_cfg = {"run": {"objective": "sft", "method": "lora", "model": "/models/demo-llama", "dataset": "words",
                       "training": {"max_steps": 120, "learning_rate": 0.0002}}}  # fmt: skip
    with store.raw() as conn:
        alpha = _insert(conn, "projects", name="alpha", description="word reversal on the demo model",
                        created_at=T0, updated_at=T0 + 3 * DAY)  # fmt: skip
        _insert(conn, "projects", name="beta", description="", created_at=T0, updated_at=T0 + DAY)
        lint = json.dumps({"verdict": "ok", "checklist": [{"check": "duplicates", "status": "ok", "detail": ""}]})
        _insert(conn, "datasets", project_id=alpha, name="words", format="chat", num_train=900, num_val=100,
                lint=lint, created_at=T0 + 600)  # fmt: skip
        common = {"project_id": alpha, "created_at": T0 + DAY, "updated_at": T0 + DAY + 900,
                  "started_at": T0 + DAY + 60}  # fmt: skip
        run = _insert(conn, "jobs", kind="train", name="first", status="completed", config=json.dumps(run_cfg),
                      progress=1.0, step=120, total_steps=120, finished_at=T0 + DAY + 900,
                      result=json.dumps({"eval_loss": 0.4412, "artifact_id": 1}), **common)  # fmt: skip
        _insert(conn, "jobs", kind="train", name="second", status="failed", config=json.dumps(run_cfg),
                progress=0.25, step=30, total_steps=120, finished_at=T0 + DAY + 900,
                error="CUDA out of memory: tried to allocate 2.00 GiB\ndetails", **common)  # fmt: skip
        merge = _insert(conn, "jobs", kind="merge", name="first-merged", status="completed", progress=1.0,
                        config=json.dumps({"artifact_id": 1, "dtype": "fp32"}), finished_at=T0 + 2 * DAY,
                        result=json.dumps({"artifact_id": 2, "path": "/h/jobs/3/output"}), slot="post",
                        **common)  # fmt: skip
        _insert(conn, "jobs", kind="convert", name="first-gguf", status="queued", config="{}", slot="post",
                project_id=alpha, created_at=T0 + 2 * DAY, updated_at=T0 + 2 * DAY)  # fmt: skip
        _insert(conn, "jobs", kind="eval", name="", status="failed", config="{}", slot="post",
                error="no such split: test", finished_at=T0 + 2 * DAY, **{**common, "created_at": T0 + 2 * DAY})
        _insert(conn, "artifacts", project_id=alpha, job_id=run, kind="adapter", name="first-adapter",
                path="/h/jobs/1/output/adapter", size=3_400_000, meta="{}", created_at=T0 + DAY)  # fmt: skip
        points = []
        for step in range(1, 121):
            points.append((run, step, "loss", 2.4 * math.exp(-step / 30) + 0.4 + 0.05 * math.sin(step), T0))
            points.append((run, step, "learning_rate", 2e-4 * (1 - step / 120) + 1e-6, T0))
            points.append((run, step, "grad_norm", 1.0 + 0.3 * math.cos(step / 3), T0))
            if step % 20 == 0:
                points.append((run, step, "eval_loss", 2.4 * math.exp(-step / 30) + 0.45, T0))
        conn.executemany("INSERT INTO metrics (job_id, step, name, value, created_at) VALUES (?, ?, ?, ?, ?)",
                         points)  # fmt: skip
        log = Path(store.home) / "jobs" / str(merge) / "job.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("[00:00:01] job 3 (merge) started, pid 4242\n[00:00:02] loading the base model\n"
                       "[00:00:09] merging the adapter into the base (fp32)\n[00:00:15] wrote the merged model\n"
                       "[00:00:15] job 3 completed (peak RSS 812 MB)\n")  # fmt: skip
        conn.execute("UPDATE jobs SET log_path = ? WHERE id = ?", (str(log), merge))


@pytest.fixture
def fixed(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setattr("core.procs.machine_line", lambda: "2 cores · load 0.50 · memory 1.0/8.0 GB used")
    fill(store)
    yield store
    monkeypatch.delenv("TZ")
    time.tzset()


def app_for(store: Store) -> TunedeckApp:
    return TunedeckApp(store, refresh_seconds=0.3)


def settle(condition: Callable[[TunedeckApp], object], what: str) -> Callable[[Pilot], object]:
    async def run_before(pilot: Pilot) -> None:
        app: TunedeckApp = pilot.app  # type: ignore[assignment]
        await wait_for(pilot, lambda: app.screen.query("#projects") and app.screen.projects, "the projects")
        await wait_for(pilot, lambda: condition(app), what, timeout=10)
        await pilot.pause(0.3)  # a last poll lands and lays out

    return run_before


def opened(push: Callable[[TunedeckApp], None], condition: Callable[[TunedeckApp], object], what: str,
           keys: tuple[str, ...] = ()) -> Callable[[Pilot], object]:  # fmt: skip
    async def run_before(pilot: Pilot) -> None:
        app: TunedeckApp = pilot.app  # type: ignore[assignment]
        await wait_for(pilot, lambda: app.screen.query("#projects") and app.screen.projects, "the projects")
        push(app)
        await wait_for(pilot, lambda: condition(app), what, timeout=10)
        if keys:
            await pilot.press(*keys)
        await pilot.pause(0.5)

    return run_before


def test_projects_screen(fixed: Store, snap_compare) -> None:
    assert snap_compare(app_for(fixed), terminal_size=SIZE, run_before=settle(lambda a: True, "the projects"))


def _project(app: TunedeckApp) -> None:
    from tui.screens.project import ProjectScreen

    app.push_screen(ProjectScreen("alpha"))


def _project_loaded(app: TunedeckApp) -> bool:
    return getattr(app.screen, "data", None) is not None and app.screen.query("#datasets-table")


def test_project_datasets_tab(fixed: Store, snap_compare) -> None:
    assert snap_compare(app_for(fixed), terminal_size=SIZE, run_before=opened(_project, _project_loaded, "project"))


def test_project_runs_tab(fixed: Store, snap_compare) -> None:
    assert snap_compare(app_for(fixed), terminal_size=SIZE,
                        run_before=opened(_project, _project_loaded, "project", keys=("2",)))  # fmt: skip


def test_project_artifacts_tab(fixed: Store, snap_compare) -> None:
    assert snap_compare(app_for(fixed), terminal_size=SIZE,
                        run_before=opened(_project, _project_loaded, "project", keys=("3",)))  # fmt: skip


def _run_loaded(app: TunedeckApp) -> bool:
    from tui.screens.run import RunScreen

    return isinstance(app.screen, RunScreen) and app.screen.detail is not None and bool(app.screen.latest)


def test_run_screen(fixed: Store, snap_compare) -> None:
    from tui.screens.run import RunScreen

    assert snap_compare(app_for(fixed), terminal_size=SIZE,
                        run_before=opened(lambda app: app.push_screen(RunScreen(1)), _run_loaded, "the run"))


def test_run_screen_smoothed_log_scale(fixed: Store, snap_compare) -> None:
    from tui.screens.run import RunScreen

    assert snap_compare(app_for(fixed), terminal_size=SIZE,
                        run_before=opened(lambda app: app.push_screen(RunScreen(1)), _run_loaded, "the run",
                                          keys=("s", "l")))  # fmt: skip


def test_job_screen(fixed: Store, snap_compare) -> None:
    from tui.screens.job import JobScreen

    def loaded(app: TunedeckApp) -> bool:
        return isinstance(app.screen, JobScreen) and app.screen.detail is not None and app.screen.stage != ""

    assert snap_compare(app_for(fixed), terminal_size=SIZE,
                        run_before=opened(lambda app: app.push_screen(JobScreen(3)), loaded, "the merge job"))


def test_jobs_screen(fixed: Store, snap_compare) -> None:
    from tui.screens.jobs import JobsScreen

    def loaded(app: TunedeckApp) -> bool:
        return isinstance(app.screen, JobsScreen) and app.screen.loaded

    assert snap_compare(app_for(fixed), terminal_size=SIZE, run_before=opened(lambda app: app.action_jobs(),
                                                                              loaded, "the jobs"))  # fmt: skip


def test_gpu_screen_without_a_gpu(fixed: Store, snap_compare) -> None:
    from tui.screens.gpu import GpuScreen

    sampler = Sampler(FakeNvml([], init_error=12), name_of=lambda pid: None, parent_of=lambda pid: None)

    def loaded(app: TunedeckApp) -> bool:
        return isinstance(app.screen, GpuScreen) and app.screen.procs is not None

    assert snap_compare(app_for(fixed), terminal_size=SIZE,
                        run_before=opened(lambda app: app.push_screen(GpuScreen(sampler=sampler)), loaded, "GPUs"))
