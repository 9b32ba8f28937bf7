"""The job status state machine: every legal move works, every illegal one is refused."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import pytest

from store.errors import IllegalTransition, NotFound
from store.jobs import ALLOWED, can_move, create_job, get_job, jobs_changed_since, transition
from store.models import JobStatus
from store.projects import create_project

LEGAL = {
    ("queued", "running"),
    ("queued", "cancelled"),
    ("running", "completed"),
    ("running", "failed"),
    ("running", "cancelled"),
    ("running", "interrupted"),
    ("interrupted", "queued"),
    ("failed", "queued"),
    ("cancelled", "queued"),
}
PATH_TO = {  # a legal way to reach each status from queued
    "queued": [],
    "running": ["running"],
    "completed": ["running", "completed"],
    "failed": ["running", "failed"],
    "cancelled": ["running", "cancelled"],
    "interrupted": ["running", "interrupted"],
}


def test_table_is_the_documented_one() -> None:
    table = {(a.value, b.value) for a, targets in ALLOWED.items() for b in targets}
    assert table == LEGAL


def _job_in(store, status: str) -> int:
    with store.write() as session:
        project = create_project(session, f"p-{status}-{id(object())}")
        job_id = create_job(session, project.id, "train").id
    for step in PATH_TO[status]:
        with store.write() as session:
            transition(session, job_id, step)
    return job_id


@pytest.mark.parametrize(("src", "dst"), list(itertools.product([s.value for s in JobStatus], repeat=2)))
def test_every_move(store, src: str, dst: str) -> None:
    job_id = _job_in(store, src)
    if (src, dst) in LEGAL:
        with store.write() as session:
            transition(session, job_id, dst)
        with store.read() as session:
            assert get_job(session, job_id).status == dst
        assert can_move(src, dst)
    else:
        assert not can_move(src, dst)
        with pytest.raises(IllegalTransition, match=f"from {src} to {dst}"), store.write() as session:
            transition(session, job_id, dst)
        with store.read() as session:
            assert get_job(session, job_id).status == src


def test_timestamps_and_fields(store) -> None:
    job_id = _job_in(store, "queued")
    with store.write() as session:
        transition(session, job_id, "running", pid=4242)
    with store.read() as session:
        job = get_job(session, job_id)
        assert job.pid == 4242 and job.started_at and job.heartbeat_at and job.finished_at is None
    with store.write() as session:
        transition(session, job_id, "failed", error="CUDA out of memory")
    with store.read() as session:
        job = get_job(session, job_id)
        assert job.error == "CUDA out of memory" and job.finished_at
    with store.write() as session:  # retry clears the last attempt's end state
        transition(session, job_id, "queued")
    with store.read() as session:
        job = get_job(session, job_id)
        assert job.status == "queued" and job.error is None and job.finished_at is None and job.pid is None


def test_unknown_job_and_status(store) -> None:
    with pytest.raises(NotFound), store.write() as session:
        transition(session, 999, "running")
    job_id = _job_in(store, "queued")
    with pytest.raises(ValueError), store.write() as session:
        transition(session, job_id, "paused")


def test_changed_since(store) -> None:
    job_id = _job_in(store, "queued")
    with store.read() as session:
        mark = get_job(session, job_id).updated_at
        assert jobs_changed_since(session, mark) == []
    with store.write() as session:
        transition(session, job_id, "running")
    with store.read() as session:
        assert [j.id for j in jobs_changed_since(session, mark)] == [job_id]


def test_compare_and_set_race(tmp_path) -> None:
    """Two processes' sessions both try queued -> running: exactly one wins."""
    from store.db import open_store

    a, b = open_store(tmp_path / "h"), open_store(tmp_path / "h")
    job_id = _job_in(a, "queued")
    wins = 0
    for s in (a, b):
        try:
            with s.write() as session:
                transition(session, job_id, "running")
            wins += 1
        except IllegalTransition:
            pass
    assert wins == 1


def test_a_job_whose_process_is_gone_is_interrupted_at_once(store) -> None:  # type: ignore[no-untyped-def]
    """After a kill -9 or a power cut the next reader need not wait a minute for the heartbeat to go stale:
    a running job whose process no longer exists on this machine is interrupted at once."""
    import subprocess
    import sys
    import time

    from store.jobs import get_job, process_gone, reap_stale

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with store.write() as session:
            project_id = create_project(session, "p").id
            job_id = create_job(session, project_id, "train").id
            transition(session, job_id, "running", pid=proc.pid)
            assert reap_stale(session) == []  # alive, fresh heartbeat
    finally:
        proc.kill()
        proc.wait()
    with store.write() as session:
        assert reap_stale(session) == [job_id]
        job = get_job(session, job_id)
        assert job.status == "interrupted" and "process is gone" in (job.error or "")
    assert not process_gone(os.getpid(), time.time())  # this process started before "now"
    assert process_gone(os.getpid(), 1.0)  # a job started at 1970 cannot be this process: the pid was reused
    assert not process_gone(None, time.time())
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # exits; not waited for, so a zombie
    deadline = time.monotonic() + 10
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert process_gone(zombie.pid, time.time() - 60)  # killed engines whose runner died too look like this
    zombie.wait()
