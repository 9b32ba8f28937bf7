"""Power-loss approximation: SIGKILL every tunedeck process at random moments of a training run and an import,
then check the store as the next reader finds it, resume, and check the run still ends where it should."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import copy_home, processes_with, run_cli, store_damage, wait_job

pytestmark = pytest.mark.slow
TRIALS = 5
PLANNED_STEPS = 1500  # never finished within the trials, however fast the machine: every trial kills a live run
LEGAL_AFTER_READ = {"queued", "completed", "failed", "cancelled", "interrupted"}


def _engine_pids(home: Path) -> list[int]:
    """Every live process of this home's engine (runners and jobs)."""
    return processes_with("engine", str(home))


def _kill_all(home: Path) -> int:
    killed = 0
    for pid in _engine_pids(home):
        try:
            os.kill(pid, signal.SIGKILL)
            killed += 1
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while _engine_pids(home) and time.monotonic() < deadline:
        time.sleep(0.05)
    return killed


def _jobs(home: Path) -> dict[int, dict]:
    proc = run_cli("job", "list", "--json", home=home)  # a reader: reaps what died
    assert proc.returncode == 0, proc.stderr
    return {j["id"]: j for j in json.loads(proc.stdout)}


def _check_store(home: Path) -> list[str]:
    """What is wrong with the store as the next reader finds it ([] when all is well)."""
    problems = store_damage(home)
    for job in _jobs(home).values():
        if job["status"] not in LEGAL_AFTER_READ:
            problems.append(f"job {job['id']} is {job['status']} after every process died")
    return problems


def test_sigkill_everything_at_random_moments(home: Path, tmp_path: Path, fault_summary: list[str],
                                              demo_home_src: Path) -> None:
    from engine.demo import write_demo_dataset

    copy_home(demo_home_src, home)
    run = run_cli("run", "new", "demo", "--preset", "smoke", "--set", f"max_steps={PLANNED_STEPS}",
                  "--set", "save_steps=10", "--set", "logging_steps=1", "--set", "eval_steps=0", home=home)
    assert run.returncode == 0, run.stderr
    run_id = int(run.stdout.strip())
    rng = random.Random(20261128)
    survived = lost = 0
    imports = []
    for trial in range(TRIALS):
        data = tmp_path / f"more-{trial}.jsonl"
        write_demo_dataset(data, n=3000, seed=trial)
        imp = run_cli("dataset", "add", "demo", str(data), "--name", f"more-{trial}", "--dedup", "near",
                      "--no-wait", "--json", home=home)
        assert imp.returncode == 0, imp.stderr
        imports.append(json.loads(imp.stdout)["job_id"])
        time.sleep(rng.uniform(0.5, 4.0))  # from a job's start (a fork of the warm engine) to deep in its work
        _kill_all(home)
        problems = _check_store(home)
        status = _jobs(home)[run_id]["status"]
        assert status == "interrupted", f"trial {trial}: the run is {status} (raise PLANNED_STEPS if completed)"
        if problems:
            lost += 1
        else:
            survived += 1
        assert not problems, f"trial {trial}: {problems}"
        assert run_cli("run", "resume", str(run_id), home=home).returncode == 0
    deadline = time.monotonic() + 300
    while wait_job(home, run_id, timeout=max(1.0, deadline - time.monotonic()))["status"] == "interrupted":
        assert run_cli("run", "resume", str(run_id), home=home).returncode == 0
    job = json.loads(run_cli("job", "show", str(run_id), "--json", home=home).stdout)
    fault_summary.append(f"power loss (SIGKILL of every process, {TRIALS} random moments): trials "
                         f"{survived + lost}, survived {survived}, lost {lost}")
    assert job["status"] == "completed", job["error"]
    assert job["step"] == PLANNED_STEPS
    with sqlite3.connect(home / "tunedeck.db") as conn:
        steps = [s for (s,) in conn.execute("SELECT step FROM metrics WHERE job_id = ? AND name = 'loss' "
                                            "ORDER BY step", (run_id,))]
    assert steps == sorted(set(steps)) and steps[-1] == PLANNED_STEPS
    _kill_all(home)  # the imports' runner, if still going
    for job_id in imports:  # every interrupted import left no dataset row and no snapshot behind
        assert _jobs(home)[job_id]["status"] in LEGAL_AFTER_READ
    with sqlite3.connect(home / "tunedeck.db") as conn:
        rows = dict(conn.execute("SELECT name, path FROM datasets").fetchall())
    for name, path in rows.items():
        assert Path(path, "train.jsonl").is_file(), name
