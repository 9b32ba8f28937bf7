"""Contention on the store for a minute, all real processes: a training run logging metrics every step, a
second process writing metrics through the engine's own code path in a tight loop, two CLI processes queueing,
cancelling, creating, renaming and deleting in loops, and the real TUI reading the projects, the Runs tab and the run
screen. No user may see "database is locked" (or any SQLite error), and every write must land."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import ROOT, copy_home, run_cli
from textual.message import Message
from textual.worker import Worker, WorkerState

pytestmark = pytest.mark.slow
DURATION_S = 60.0
CLI_WRITERS = 2
SQLITE_ERROR = re.compile(r"locked|OperationalError|DatabaseError|disk I/O|sqlite", re.IGNORECASE)


@dataclass
class CliWriter:
    """What one CLI writer did: each command run, and what it should have left in the store."""

    number: int
    commands: list[tuple[tuple[str, ...], int, str]] = field(default_factory=list)  # (args, exit code, stderr)
    projects: dict[str, bool] = field(default_factory=dict)  # name -> should exist at the end
    cancelled: dict[int, str] = field(default_factory=dict)  # queued-then-cancelled job id -> its run name

    def cli(self, home: Path, *args: str) -> str:
        proc = run_cli(*args, home=home)
        self.commands.append((args, proc.returncode, proc.stderr))
        return proc.stdout if proc.returncode == 0 else ""

    def loop(self, home: Path, deadline: float) -> None:
        k = 0
        while time.monotonic() < deadline:
            k += 1
            name = f"w{self.number}-{k}"
            if self.cli(home, "project", "create", name):
                self.projects[name] = True
            out = self.cli(home, "run", "new", "demo", "--preset", "smoke", "--set", f"name={name}")
            if out.strip().isdigit():
                job_id = int(out)
                if self.cli(home, "job", "cancel", str(job_id)):
                    self.cancelled[job_id] = name
            if k % 2 == 0 and self.cli(home, "project", "delete", name):
                self.projects[name] = False
            elif k % 2 == 1 and self.cli(home, "project", "rename", name, f"{name}-renamed"):
                self.projects[name], self.projects[f"{name}-renamed"] = False, True

    def problems(self) -> list[str]:
        """Commands that failed or showed an error (the config warnings of `run new` are fine)."""
        out = []
        for args, code, stderr in self.commands:
            shown = [line for line in stderr.splitlines() if line.strip() and not line.startswith("warning: ")]
            if code != 0 or shown:
                out.append(f"writer {self.number}: {' '.join(args)} -> exit {code}: {' | '.join(shown)}")
        return out


@dataclass
class TuiReads:
    """What the TUI read, and every error it met (shown or not)."""

    reads: Counter = field(default_factory=Counter)  # worker group -> successful reads
    errors: list[str] = field(default_factory=list)
    cycles: int = 0


async def _read_in_the_tui(home: Path, run_id: int, deadline: float, seen: TuiReads) -> str:
    """Cycle through the projects list, the demo project's Runs tab and the run's screen until `deadline`;
    returns every notification the app showed."""
    from tui_pilot import SIZE, notes, text, wait_for

    from store.db import open_store
    from tui.app import TunedeckApp
    from tui.screens.project import ProjectScreen
    from tui.screens.run import RunScreen

    def hook(message: Message) -> None:
        if isinstance(message, Worker.StateChanged):
            if message.state == WorkerState.SUCCESS:
                seen.reads[message.worker.group] += 1
            elif message.state == WorkerState.ERROR:
                seen.errors.append(f"{message.worker.group}: {message.worker.error!r}")

    store = open_store(home)
    app = TunedeckApp(store, refresh_seconds=0.3)
    async with app.run_test(size=SIZE, message_hook=hook) as pilot:
        while time.monotonic() < deadline:
            seen.cycles += 1
            app.call_later(app.push_screen, ProjectScreen("demo"))  # in the app's context: the hook sees its workers
            await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen) and app.screen.data is not None,
                           "the demo project", timeout=60)
            await pilot.press("2")
            await pilot.pause(2.0)
            app.call_later(app.push_screen, RunScreen(run_id))
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.detail is not None,
                           "the run", timeout=60)
            await pilot.pause(2.0)
            header = text(app, "#run-header")
            if "Could not read" in header:
                seen.errors.append(f"run screen: {header}")
            await pilot.press("escape", "escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, ProjectScreen | RunScreen), "the projects",
                           timeout=60)
            await pilot.pause(0.5)
        shown = notes(app)
    store.close()
    return shown


def _status(home: Path, job_id: int) -> dict:
    proc = run_cli("job", "show", str(job_id), "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _query(home: Path, sql: str, *params: object) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(home / "tunedeck.db")) as conn:
        return conn.execute(sql, params).fetchall()


def _stop_all(home: Path) -> None:
    """Cancel every queued or running job and wait for them to end (no engine outlives the test)."""
    from store.db import open_store
    from store.jobs import request_cancel

    store = open_store(home)
    active = "SELECT id FROM jobs WHERE status IN ('queued', 'running')"
    for (job_id,) in _query(home, active):
        with contextlib.suppress(Exception), store.write() as session:
            request_cancel(session, job_id)
    store.close()
    deadline = time.monotonic() + 120
    while _query(home, active) and time.monotonic() < deadline:
        time.sleep(0.5)


@pytest.fixture
def demo_run(home: Path, demo_home_src: Path) -> Iterator[int]:
    """The demo project with a training run that logs metrics at every step and would go on for hours."""
    copy_home(demo_home_src, home)
    proc = run_cli("run", "new", "demo", "--preset", "smoke", "--set", "max_steps=1000000", "--set",
                   "logging_steps=1", "--set", "eval_steps=0", "--set", "save_steps=1000000", home=home)
    assert proc.returncode == 0, proc.stderr
    try:
        yield int(proc.stdout)
    finally:
        _stop_all(home)


def test_store_under_contention(home: Path, demo_run: int, fault_summary: list[str]) -> None:
    run_id = demo_run
    deadline = time.monotonic() + 180
    while not _query(home, "SELECT 1 FROM metrics WHERE job_id = ? AND name = 'loss'", run_id):
        assert time.monotonic() < deadline, f"the run never logged a step: {_status(home, run_id)}"
        time.sleep(0.5)
    (project_id,) = _query(home, "SELECT id FROM projects WHERE name = 'demo'")[0]
    from store.db import open_store
    from store.jobs import create_job

    store = open_store(home)
    with store.write() as session:  # the probe's metrics belong to a job no runner serves
        probe_id = create_job(session, project_id, "metrics-probe", name="probe", slot="none").id
    store.close()

    end = time.monotonic() + DURATION_S
    probe = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "faults" / "metric_writer.py"), str(home), str(probe_id),
         str(DURATION_S)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    writers = [CliWriter(n) for n in range(1, CLI_WRITERS + 1)]
    threads = [threading.Thread(target=w.loop, args=(home, end)) for w in writers]
    for t in threads:
        t.start()
    tui = TuiReads()
    try:
        shown = asyncio.run(_read_in_the_tui(home, run_id, end, tui))
    finally:
        for t in threads:
            t.join()
        probe_out, probe_err = probe.communicate(timeout=120)
    assert probe.returncode == 0, probe_err
    probed = json.loads(probe_out)

    assert run_cli("run", "cancel", str(run_id), home=home).returncode == 0
    deadline = time.monotonic() + 120
    while (run := _status(home, run_id))["status"] == "running":
        assert time.monotonic() < deadline, "the run did not stop after cancel"
        time.sleep(0.5)

    lost: list[str] = []
    # The engine: a loss point at every step it trained, and it ended as asked.
    steps = [s for (s,) in _query(home, "SELECT step FROM metrics WHERE job_id = ? AND name = 'loss' ORDER BY step",
                                  run_id)]
    engine_writes = run["step"]
    if steps != list(range(1, engine_writes + 1)):
        lost.append(f"engine: loss points at {len(steps)} of {engine_writes} steps")
    if run["status"] != "cancelled":
        lost.append(f"engine: the run ended {run['status']}: {run['error']}")
    # The probe: one point per write attempted, none failed.
    lost += [f"probe: {e}" for e in probed["errors"]]
    points = _query(home, "SELECT step, value FROM metrics WHERE job_id = ? AND name = 'probe' ORDER BY step",
                    probe_id)
    if points != [(s, float(s)) for s in range(1, probed["attempted"] + 1)]:
        lost.append(f"probe: {len(points)} points for {probed['attempted']} writes")
    # The CLI writers: every command succeeded quietly and left what it should.
    projects = {name for (name,) in _query(home, "SELECT name FROM projects")}
    jobs = {i: (name, status) for i, name, status in _query(home, "SELECT id, name, status FROM jobs")}
    cli_writes = 0
    for w in writers:
        cli_writes += len(w.commands)
        lost += w.problems()
        lost += [f"writer {w.number}: project {n} {'missing' if keep else 'not deleted'}"
                 for n, keep in w.projects.items() if (n in projects) != keep]
        lost += [f"writer {w.number}: job {i} is {jobs.get(i)}" for i, n in w.cancelled.items()
                 if jobs.get(i) != (n, "cancelled")]
    # Users: the app's notifications and errors, the engine's logs.
    lost += [f"tui: {e}" for e in tui.errors]
    lost += [f"tui notification: {line}" for line in shown.splitlines() if SQLITE_ERROR.search(line)]
    for log in [*home.glob("jobs/*/job.log"), *home.glob("logs/*.log")]:
        lost += [f"{log.relative_to(home)}: {line}" for line in log.read_text(errors="replace").splitlines()
                 if SQLITE_ERROR.search(line) or "heartbeat failed" in line or "Traceback" in line]
    integrity = _query(home, "PRAGMA integrity_check")[0][0]

    trials = engine_writes + probed["attempted"] + cli_writes
    fault_summary.append(f"contention ({DURATION_S:.0f} s: engine metrics, {CLI_WRITERS} CLI writers, TUI reader): "
                         f"trials {trials}, survived {trials - len(lost)}, lost {len(lost)}")
    print(f"engine steps {engine_writes}, probe writes {probed['attempted']}, CLI commands {cli_writes}, "
          f"TUI reads {dict(tui.reads)} in {tui.cycles} cycles")
    assert integrity == "ok"
    assert not lost, "\n".join(lost[:30])
    assert engine_writes > 0 and probed["attempted"] > 0 and cli_writes >= 3 * CLI_WRITERS and tui.cycles > 1
