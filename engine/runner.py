"""The runner: one process per slot that runs its queued jobs in order, each in a child process.

Only one runner serves a slot (an flock on `locks/runner-<slot>.lock`, released by the
kernel even on kill -9). It carries on past failed jobs and exits when the queue is empty.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

from engine.jobrun import job_dir
from store.db import Store
from store.errors import IllegalTransition
from store.home import subdir
from store.jobs import get_job, next_queued, reap_stale, transition
from store.models import JobStatus


class SlotLock:
    """An exclusive, non-blocking lock on a runner slot."""

    def __init__(self, home: Path, slot: str) -> None:
        self.path = subdir(home, "locks") / f"runner-{slot}.lock"
        self.fd: int | None = None

    def acquire(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def engine_command(home: Path, *args: str) -> list[str]:
    """argv for `python -m engine --home HOME ARGS`."""
    return [sys.executable, "-m", "engine", "--home", str(home), *args]


def _run_child(store: Store, job_id: int) -> int:
    log = job_dir(store.home, job_id) / "job.log"
    with log.open("ab") as fh:
        child = subprocess.run(
            engine_command(store.home, "job", "--id", str(job_id)),
            stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, check=False,
        )
    return child.returncode


def _settle(store: Store, job_id: int, code: int) -> None:
    """A child that died without recording its end (killed, crashed interpreter) leaves a running row."""
    with store.write() as session:
        job = get_job(session, job_id)
        if job.status != JobStatus.running.value:
            return
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        try:
            transition(session, job_id, JobStatus.interrupted, error=f"the engine process ended ({how})")
        except IllegalTransition:
            pass


def run_slot(store: Store, slot: str) -> int:
    """Serve `slot` until its queue is empty; returns how many jobs ran (0 if another runner holds it)."""
    lock = SlotLock(store.home, slot)
    if not lock.acquire():
        return 0
    ran = 0
    try:
        while True:
            with store.write() as session:
                reap_stale(session)
            with store.read() as session:
                job = next_queued(session, slot)
            if job is None:
                # Release, then look once more: a job queued between our last look and the
                # release found the lock held, so its own runner exited; we must take it.
                lock.release()
                with store.read() as session:
                    job = next_queued(session, slot)
                if job is None or not lock.acquire():
                    return ran
                continue
            print(f"[{time.strftime('%H:%M:%S')}] runner {slot}: job {job.id} ({job.kind})", flush=True)
            code = _run_child(store, job.id)
            _settle(store, job.id, code)
            ran += 1
    finally:
        lock.release()
