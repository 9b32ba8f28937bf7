"""Every job in every project: the queue order (moving queued jobs up and down, honoured by the runner),
the Jobs screen (`j`) and the job screen of non-training jobs, in a real store with real runners."""

from __future__ import annotations

import time

import pytest
from textual.pilot import Pilot
from tui_pilot import drive, notes, screen_text, text, type_text, wait_for

from engine.runner import run_slot
from store.db import Store
from store.errors import IllegalTransition
from store.jobs import create_job, get_job, move_in_queue, next_queued
from store.projects import create_project
from tui.app import TunedeckApp
from tui.screens.job import JobScreen
from tui.screens.jobs import JobsScreen
from tui.screens.run import RunScreen
from tui.widgets.live_table import LiveTable
from tui.widgets.log_tail import LogTail
from tui.widgets.yes_no import ConfirmDialog


def queue_selftests(store: Store, n: int, slot: str = "order", project: str = "p") -> list[int]:
    with store.write() as session:
        pid = create_project(session, project).id
        return [create_job(session, pid, "selftest", {"steps": 1, "seconds": 0.05}, slot=slot).id for _ in range(n)]


def queued_order(store: Store, slot: str) -> list[int]:
    from store.jobs import QUEUE_ORDER_SQL

    with store.raw() as conn:
        return [r[0] for r in conn.execute(f"SELECT id FROM jobs WHERE slot = ? AND status = 'queued' "
                                           f"ORDER BY {QUEUE_ORDER_SQL}", (slot,))]


def test_moving_queued_jobs_changes_what_the_runner_takes_next(store: Store) -> None:
    a, b, c, d = queue_selftests(store, 4)
    with store.write() as session:
        other = create_job(session, 1, "selftest", {}, slot="elsewhere").id  # another slot's queue is apart
        assert move_in_queue(session, d, -1) == 2
        assert move_in_queue(session, d, -1) == 1
        assert move_in_queue(session, d, -5) == 0  # clamped at the top
        assert move_in_queue(session, a, +1) == 2
        assert move_in_queue(session, c, +1) == 3  # already last: stays
        assert move_in_queue(session, other, -1) == 0
    assert queued_order(store, "order") == [d, b, a, c]
    with store.read() as session:
        assert next_queued(session, "order").id == d
    # A job that jumped ahead keeps its place when new jobs arrive; a new job queues at the end.
    (e,) = queue_selftests(store, 1, project="q")
    assert queued_order(store, "order") == [d, b, a, c, e]
    with store.write() as session:
        assert move_in_queue(session, e, -4) == 0
    assert queued_order(store, "order") == [e, d, b, a, c]

    assert run_slot(store, "order") == 5  # the runner honours the order: start times follow it
    with store.read() as session:
        jobs = {i: get_job(session, i) for i in (a, b, c, d, e)}
    assert all(j.status == "completed" for j in jobs.values())
    starts = sorted(jobs, key=lambda i: jobs[i].started_at)
    assert starts == [e, d, b, a, c]
    with store.write() as session, pytest.raises(IllegalTransition, match="only queued jobs can be moved"):
        move_in_queue(session, a, -1)


def test_ties_between_a_requeued_job_and_a_moved_one_keep_a_strict_order(store: Store) -> None:
    a, b, c = queue_selftests(store, 3)
    with store.write() as session:
        move_in_queue(session, c, -2)  # c takes a's id as its position: a tie if a's position is NULL again
    with store.raw() as conn:
        conn.execute("UPDATE jobs SET queue_pos = NULL WHERE id = ?", (a,))
    assert queued_order(store, "order") == [a, c, b]  # c's position equals a's id: the id breaks the tie
    with store.write() as session:
        assert move_in_queue(session, b, -1) == 1
    assert queued_order(store, "order") == [a, b, c]
    with store.raw() as conn:
        keys = [r[0] for r in conn.execute("SELECT queue_pos FROM jobs WHERE slot = 'order' ORDER BY queue_pos")]
    assert len(set(keys)) == 3


# ----------------------------------------------------------------------------- the screens


def _job_row(store: Store, project_id: int, kind: str, status: str, name: str = "", **config: object) -> int:
    import json

    now = time.time()
    with store.raw() as conn:
        cursor = conn.execute(
            "INSERT INTO jobs (project_id, kind, name, status, config, progress, created_at, updated_at, finished_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (project_id, kind, name, status, json.dumps(config), 1.0 if status == "completed" else 0.0, now, now,
             now if status not in ("queued", "running") else None),
        )
        return int(cursor.lastrowid)


def _selftest(store: Store, project_id: int, slot: str, steps: int, seconds: float) -> int:
    from engine.launch import start_runner

    with store.write() as session:
        job_id = create_job(session, project_id, "selftest", {"steps": steps, "seconds": seconds}, slot=slot).id
    start_runner(store.home, slot)
    return job_id


def _status(store: Store, job_id: int) -> str:
    with store.raw() as conn:
        return conn.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()[0]


def _stop(store: Store, job_id: int) -> None:
    from store.jobs import request_cancel

    if _status(store, job_id) in ("queued", "running"):
        with store.write() as session:
            request_cancel(session, job_id)
    deadline = time.monotonic() + 30
    while _status(store, job_id) in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)


def footer(app: TunedeckApp) -> str:
    return screen_text(app).splitlines()[-1]


def test_job_screen_shows_progress_stage_eta_and_log_and_only_the_keys_that_apply(store: Store) -> None:
    with store.write() as session:
        pid = create_project(session, "p").id
    job_id = _selftest(store, pid, "ui", steps=30, seconds=9.0)

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: app.screen.query("#projects"), "the projects list")
        app.push_screen(JobScreen(job_id))
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen) and app.screen.detail is not None, "job")
        screen: JobScreen = app.screen  # type: ignore[assignment]
        await wait_for(pilot, lambda: screen.detail.status == "running" and screen.detail.step >= 3, "running",
                       timeout=30)  # fmt: skip
        await wait_for(pilot, lambda: "ETA -" not in text(app, "#job-header") and "/30 steps" in
                       text(app, "#job-header"), "progress and an ETA", timeout=10)  # fmt: skip
        header = text(app, "#job-header")
        assert "running" in header and "ETA " in header and "· ui" in header
        assert f"stage: job {job_id} (selftest) started" in header  # the engine's last message
        assert "Cancel job" in footer(app) and "Open artifact" not in footer(app)
        assert "(selftest) started" in "\n".join(screen.query_one(LogTail).lines)
        assert "project p" in text(app, "#topbar") and f"selftest job {job_id}" in text(app, "#topbar")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.detail.status == "cancelled", "cancelled", timeout=30)
        await wait_for(pilot, lambda: "Cancel job" not in footer(app), "no cancel key once it ended")
        assert not screen.check_action("cancel_job", ())
        await pilot.press("2")
        await wait_for(pilot, lambda: '"steps": 30' in screen_text(app), "the details tab")

    try:
        drive(store, scenario)
    finally:
        _stop(store, job_id)


def test_runs_tab_lists_runs_only_and_compare_refuses_other_jobs(store: Store) -> None:
    from store.errors import Refused
    from store.views import compare_runs, project_runs

    with store.write() as session:
        pid = create_project(session, "p").id
    run = _job_row(store, pid, "train", "completed", "r1", run={"method": "lora", "objective": "sft"})
    merge = _job_row(store, pid, "merge", "completed")
    _job_row(store, pid, "eval", "failed")
    with store.raw() as conn:
        assert [r.id for r in project_runs(conn, pid)] == [run]
        with pytest.raises(Refused, match=f"job {merge} is a merge job, not a training run"):
            compare_runs(conn, [run, merge])


def test_jobs_screen_lists_every_project_in_queue_order_moves_cancels_and_opens(store: Store) -> None:
    with store.write() as session:
        p1 = create_project(session, "alpha").id
        p2 = create_project(session, "beta").id
        waiting = [create_job(session, pid, "selftest", {"steps": 1}, slot="idle").id for pid in (p1, p2, p1)]
    run = _job_row(store, p2, "train", "completed", "r1", run={"method": "qlora", "objective": "sft"})
    merge = _job_row(store, p1, "merge", "failed")
    running = _selftest(store, p1, "ui", steps=40, seconds=20.0)

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: app.screen.query("#projects"), "the projects list")
        await pilot.press("J")
        await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen) and app.screen.loaded, "the jobs screen")
        screen: JobsScreen = app.screen  # type: ignore[assignment]
        table = screen.query_one("#jobs-table", LiveTable)
        await wait_for(pilot, lambda: screen.jobs[str(running)].status == "running", "running", timeout=30)
        order = [int(k) for k, _ in table.shown]
        assert order == [running, *waiting, merge, run]  # running, queued in queue order, then ended
        rows = dict(table.shown)
        assert rows[str(waiting[1])][1] == "beta" and rows[str(waiting[1])][4] == "#2"
        assert rows[str(run)][2] == "qlora" and rows[str(running)][4] == "now" and rows[str(running)][7] == "ui"
        await wait_for(pilot, lambda: dict(table.shown)[str(running)][6] != "-", "the running job's ETA",
                       timeout=15)  # fmt: skip
        assert "1 running · 3 queued" in text(app, "#jobs-summary")
        table.move_cursor(row=0)
        await pilot.press("j", "j")  # j/k move the cursor, as in every table (J opened this screen)
        assert table.cursor_row == 2 and isinstance(app.screen, JobsScreen)
        await pilot.press("k")
        assert table.cursor_row == 1

        table.move_cursor(row=order.index(waiting[2]))
        await wait_for(pilot, lambda: "Move up" in footer(app), "the move keys on a queued job")
        await pilot.press("plus")
        await wait_for(pilot, lambda: [int(k) for k, _ in table.shown][1:4] == [waiting[0], waiting[2], waiting[1]],
                       "moved up")  # fmt: skip
        assert table.current_key == str(waiting[2]) and dict(table.shown)[str(waiting[2])][4] == "#2"
        await pilot.press("plus", "plus")  # to the top, and no further
        await wait_for(pilot, lambda: queued_order(store, "idle") == [waiting[2], waiting[0], waiting[1]], "top")
        await pilot.press("minus")
        await wait_for(pilot, lambda: queued_order(store, "idle") == [waiting[0], waiting[2], waiting[1]], "down")

        table.move_cursor(row=[int(k) for k, _ in table.shown].index(merge))
        await wait_for(pilot, lambda: "Move up" not in footer(app) and "Cancel" not in footer(app), "ended keys")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, JobScreen), "the job screen for a merge")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, "back")
        table.move_cursor(row=[int(k) for k, _ in table.shown].index(run))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen for a run")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, "back again")

        table.move_cursor(row=[int(k) for k, _ in table.shown].index(running))
        await wait_for(pilot, lambda: "Cancel" in footer(app), "cancel on a running job")
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDialog), "the confirmation")
        await pilot.press("y")
        await wait_for(pilot, lambda: screen.jobs[str(running)].status == "cancelled", "cancelled", timeout=30)
        assert f"job {running}: asked the engine to stop" in notes(app)  # as `tunedeck job cancel` says

    try:
        drive(store, scenario)
    finally:
        _stop(store, running)


def test_middle_clip_keeps_the_distinctive_end() -> None:
    from tui.widgets.names import middle_clip

    assert middle_clip("smollm2-135m-instruct-merged-q4_k_m.gguf", 24) == "smollm2-135…-q4_k_m.gguf"
    assert middle_clip("short", 24) == "short" and middle_clip("abcdef", 5) == "ab…ef"
    assert all(len(middle_clip("x" * 40, w)) == w for w in range(1, 30))


@pytest.mark.parametrize("which", ["help", "jobs", "job", "run", "artifact", "gpu"])
def test_q_quits_from_every_screen(store: Store, which: str) -> None:
    from gpu_fakes import FakeNvml

    from engine.gpu.nvml import Sampler
    from tui.screens.artifact import ArtifactScreen
    from tui.screens.gpu import GpuScreen

    with store.write() as session:
        pid = create_project(session, "p").id
    merge = _job_row(store, pid, "merge", "completed")
    run = _job_row(store, pid, "train", "completed", "r", run={"method": "lora"})
    with store.raw() as conn:
        art = _insert_artifact(conn, pid)
    screens = {"help": lambda app: app.action_help(), "jobs": lambda app: app.action_jobs(),
               "job": lambda app: app.push_screen(JobScreen(merge)), "run": lambda app: app.push_screen(RunScreen(run)),
               "artifact": lambda app: app.push_screen(ArtifactScreen(art)),
               "gpu": lambda app: app.push_screen(GpuScreen(sampler=Sampler(FakeNvml([], init_error=12))))}

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: app.screen.query("#projects"), "the projects list")
        screens[which](app)
        await wait_for(pilot, lambda: not app.screen.query("#projects"), which)
        await pilot.pause(0.3)
        await pilot.press("q")
        await wait_for(pilot, lambda: app.return_code is not None, "the app to quit")

    drive(store, scenario)


def _insert_artifact(conn, project_id: int) -> int:
    cursor = conn.execute("INSERT INTO artifacts (project_id, kind, name, path, meta, created_at) "
                          "VALUES (?, 'gguf', 'm-q4_k_m.gguf', '/nowhere/m.gguf', '{}', ?)", (project_id, time.time()))
    return int(cursor.lastrowid)


def test_cli_job_move_and_home_relative_paths(store: Store, tmp_path) -> None:
    from conftest import run_cli

    from tui.widgets.artifact_text import home_relative

    a, b, c = queue_selftests(store, 3)
    moved = run_cli("job", "move", str(c), "top", home=store.home)
    assert moved.returncode == 0 and f"job {c} is now #1 in its queue" in moved.stdout, moved.stderr
    assert run_cli("job", "move", str(c), "down", "1", home=store.home).returncode == 0
    assert queued_order(store, "order") == [a, c, b]
    refused = run_cli("job", "move", str(a), "up", "0", home=store.home)
    assert refused.returncode == 2 and "places must be 1 or more" in refused.stderr
    with store.write() as session:
        from store.jobs import request_cancel

        request_cancel(session, a)
    refused = run_cli("job", "move", str(a), "up", home=store.home)
    assert refused.returncode == 1 and "only queued jobs can be moved" in refused.stderr
    assert home_relative(str(store.home / "jobs" / "7" / "m.gguf"), store.home) == "jobs/7/m.gguf"
    assert home_relative("/elsewhere/m.gguf", store.home) == "/elsewhere/m.gguf"


@pytest.mark.parametrize("kind", ["merge", "train"])
def test_log_search_finds_matches_anywhere_in_a_long_log(store: Store, kind: str) -> None:
    """/ on the job screen (and a run's Log tab) searches the whole log file, far beyond what the view loaded;
    n/N walk the matches, end goes back to following the tail."""
    with store.write() as session:
        pid = create_project(session, "p").id
    job_id = _job_row(store, pid, kind, "completed")
    screen_class, status = (JobScreen, "#job-log-status") if kind == "merge" else (RunScreen, "#log-status")
    log = store.home / "jobs" / str(job_id) / "job.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:  # ~6 MB: the view opens on the last 256 KiB only
        for i in range(120_000):
            fh.write(f"[00:00:00] step {i} " + ("Tensor blk.7 fell back" if i in (1_000, 2_000, 90_000) else
                                                "ordinary line of text") + "\n")  # fmt: skip
    with store.raw() as conn:
        conn.execute("UPDATE jobs SET log_path = ? WHERE id = ?", (str(log), job_id))

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: app.screen.query("#projects"), "the projects list")
        app.push_screen(screen_class(job_id))
        await wait_for(pilot, lambda: isinstance(app.screen, screen_class) and app.screen.detail is not None, "job")
        screen = app.screen
        view = screen.query_one(LogTail)
        await wait_for(pilot, lambda: view.line_count > 1000, "the log's tail")
        assert not any("fell back" in line for line in view.lines)  # not loaded
        await pilot.press("slash")
        await wait_for(pilot, lambda: screen.query_one("#log-search").has_focus, "the search box")
        await type_text(pilot, "BLK.7 fell")
        await pilot.press("enter")
        await wait_for(pilot, lambda: screen.searching is not None, "the latest match")
        assert screen.searching.line == 90_000 and "at line 90,001 of 120,000" in text(app, status)
        assert "» [00:00:00] step 90000 Tensor blk.7 fell back" in view.lines
        await pilot.press("N")
        await wait_for(pilot, lambda: screen.searching.line == 2_000, "the earlier match")
        await pilot.press("N")
        await wait_for(pilot, lambda: screen.searching.line == 1_000, "the earliest match")
        assert "» [00:00:00] step 1000 Tensor blk.7 fell back" in view.lines
        await pilot.press("N")  # none before: says so and stays
        await wait_for(pilot, lambda: "no match" in text(app, status), "no earlier match")
        assert screen.searching.line == 1_000
        await pilot.press("n")
        await wait_for(pilot, lambda: screen.searching.line == 2_000, "the later match again")
        await pilot.press("end")  # back to the tail
        await wait_for(pilot, lambda: screen.searching is None and "following" in text(app, status),
                       "following again")  # fmt: skip
        await wait_for(pilot, lambda: view.lines and view.lines[-1].endswith("step 119999 ordinary line of text"),
                       "the tail again")  # fmt: skip
        assert not any(line.startswith("»") for line in view.lines)
        await pilot.press("slash")
        await wait_for(pilot, lambda: screen.query_one("#log-search").has_focus, "the search box again")
        await pilot.press("escape")  # closes the box only
        await wait_for(pilot, lambda: not screen.query_one("#log-search").display, "the box closed")
        assert app.screen is screen

    drive(store, scenario)


def test_line_index_reads_and_searches_by_chunks(tmp_path, monkeypatch) -> None:
    from tui.widgets import log_index
    from tui.widgets.log_index import LineIndex

    monkeypatch.setattr(log_index, "CHUNK", 1000)  # small chunks: matches across their boundaries
    path = tmp_path / "job.log"
    lines = [f"line {i} " + ("NEEDLE here" if i % 97 == 13 else "x" * (i % 50)) for i in range(5000)]
    path.write_text("\n".join(lines) + "\npartial")
    index = LineIndex(path)
    assert index.update() == 5001
    assert index.lines(0, 2) == lines[:2] and index.lines(5000, 5) == ["partial"]
    hits = [i for i, line in enumerate(lines) if "needle" in line.lower()]
    found, start = [], 0
    while (hit := index.find("needle", start)) is not None:
        found.append(hit)
        start = hit + 1
    assert found == hits
    found, start = [], 5000
    while start >= 0 and (hit := index.find("Needle", start, backward=True)) is not None:
        found.append(hit)
        start = hit - 1
    assert found == hits[::-1]
    assert index.find("partial", 0) == 5000 and index.find("zzz", 0) is None
    with path.open("a") as fh:
        fh.write(" done\nnew NEEDLE\n")
    assert index.update() == 5002 and index.find("new needle", 4990) == 5001
    path.write_text("short\n")  # replaced by a shorter file: indexed again from the start
    assert index.update() == 1 and index.lines(0, 3) == ["short"]


def test_work_in_the_unit_of_the_kind_and_the_stage_from_the_log() -> None:
    from tui.screens.job import stage_of, work_text

    assert work_text("merge-models", 12, 30) == "12/30 tensors"
    assert work_text("dataset-import", 1200, None) == "1,200 records"
    assert work_text("model-add", 4_000_000, 1_200_000_000) == "3.8 MB/1.1 GB"
    assert work_text("eval", 3, 10) == "3/10 steps"
    lines = ["[12:00:01] converting m to m-f16.gguf", "INFO:hf-to-gguf:blk.0", "[12:00:09] fidelity check: tokens"]
    assert stage_of(lines) == "fidelity check: tokens"
    assert stage_of(["no stamp here"], "before") == "before"
