"""The runner and job processes, for real: detached, ordered, single per slot, cancellable, reaped."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.launch import start_runner
from engine.runner import SlotLock
from store.db import Store
from store.jobs import create_job, get_job, reap_stale, request_cancel
from store.projects import create_project

ROOT = Path(__file__).resolve().parents[1]


def _queue(store: Store, n: int = 1, slot: str = "t", **config) -> list[int]:
    with store.write() as session:
        try:
            pid = create_project(session, "p").id
        except Exception:
            from store.projects import get_project

            pid = get_project(session, "p").id
        return [create_job(session, pid, "selftest", dict(config), slot=slot).id for _ in range(n)]


def _wait(store: Store, job_id: int, statuses: set[str], timeout: float = 60) -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with store.read() as session:
            job = get_job(session, job_id)
        if job.status in statuses:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job.status} after {timeout}s")


def test_jobs_run_in_order_and_past_failures(store: Store) -> None:
    ids = _queue(store, 1, steps=2, seconds=0.2)
    ids += _queue(store, 1, steps=3, seconds=0.2, fail_at=2)
    ids += _queue(store, 1, steps=2, seconds=0.2)
    start_runner(store.home, "t")
    jobs = [_wait(store, i, {"completed", "failed"}) for i in ids]
    assert [j.status for j in jobs] == ["completed", "failed", "completed"]
    assert jobs[1].error == "selftest failed at step 2 as asked"
    assert jobs[0].finished_at <= jobs[1].started_at and jobs[1].finished_at <= jobs[2].started_at
    assert jobs[2].progress == 1.0 and jobs[2].step == 2 and jobs[2].result["steps"] == 2
    assert 10 < jobs[2].result["peak_rss_mb"] < 2000
    log = Path(jobs[1].log_path).read_text()
    assert "selftest failed at step 2 as asked" in log


def test_second_runner_is_a_no_op(store: Store) -> None:
    lock = SlotLock(store.home, "t")
    assert lock.acquire()
    try:
        [job_id] = _queue(store, 1, steps=1, seconds=0.1)
        result = subprocess.run(
            [sys.executable, "-m", "engine", "--home", str(store.home), "runner", "--slot", "t"],
            cwd=ROOT, timeout=60, capture_output=True,
        )
        assert result.returncode == 0
        with store.read() as session:
            assert get_job(session, job_id).status == "queued"  # the lock holder serves the slot
    finally:
        lock.release()
    start_runner(store.home, "t")
    assert _wait(store, job_id, {"completed"}).status == "completed"


def test_cancel_running_and_queued(store: Store) -> None:
    running, queued = _queue(store, 2, steps=200, seconds=60)
    start_runner(store.home, "t")
    _wait(store, running, {"running"})
    with store.write() as session:
        assert request_cancel(session, queued) == "cancelled"
        assert request_cancel(session, running) == "running"
    job = _wait(store, running, {"cancelled"}, timeout=20)
    assert job.error == "cancelled"
    with store.read() as session:
        assert get_job(session, queued).status == "cancelled"


def test_job_survives_sighup_and_kill_9_is_reaped(store: Store) -> None:
    [job_id] = _queue(store, 1, steps=400, seconds=120)
    start_runner(store.home, "t")
    job = _wait(store, job_id, {"running"})
    # SIGHUP (what a dropped SSH session sends) does nothing to the job
    os.kill(job.pid, signal.SIGHUP)
    time.sleep(1.5)
    with store.read() as session:
        after = get_job(session, job_id)
    assert after.status == "running" and after.step > job.step
    # kill -9: the runner sees its child die and records it
    os.kill(job.pid, signal.SIGKILL)
    job = _wait(store, job_id, {"interrupted"}, timeout=20)
    assert job.error == "the engine process ended (killed by signal 9)"


def test_stale_heartbeat_is_reaped(store: Store) -> None:
    [job_id] = _queue(store, 1)
    from store.jobs import transition

    with store.write() as session:
        transition(session, job_id, "running", pid=999999, heartbeat_at=time.time() - 3600)
    with store.write() as session:
        assert reap_stale(session) == [job_id]
    with store.read() as session:
        job = get_job(session, job_id)
    assert job.status == "interrupted" and "heartbeat" in job.error


@pytest.mark.parametrize("slot", ["t"])
def test_job_not_queued_is_refused(store: Store, slot: str) -> None:
    [job_id] = _queue(store, 1, slot=slot)
    with store.write() as session:
        request_cancel(session, job_id)
    result = subprocess.run(
        [sys.executable, "-m", "engine", "--home", str(store.home), "job", "--id", str(job_id)],
        cwd=ROOT, timeout=60, capture_output=True, text=True,
    )
    assert result.returncode == 3 and "cannot move from cancelled to running" in result.stderr
