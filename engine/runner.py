"""The runner: one process per slot that runs its queued jobs in order, each in a child process.

Only one runner serves a slot (an flock on `locks/runner-<slot>.lock`, released by the
kernel even on kill -9). It carries on past failed jobs and exits when the queue is empty.
A GPU slot's job also holds a lock per card it uses, so overlapping slots take turns on a
card while disjoint ones run at once. A distributed run's child is `accelerate launch`
(see `engine.distributed`). The `slurm` slot's runner runs no child: it submits each job to SLURM
and follows it there (see `engine.cluster`).
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

from engine.distributed import child_command
from engine.warm import run_warm
from store.db import Store
from store.errors import IllegalTransition
from store.home import job_dir, subdir
from store.jobs import get_job, next_queued, reap_stale, transition
from store.models import Job, JobStatus
from store.payloads import PayloadError, TrainConfig, config_as

CLUSTER_SLOT = "slurm"  # engine.cluster.slurm.SLOT, without importing it for every runner


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


class DeviceLocks:
    """Exclusive locks on GPU indices, held while a job uses them: runners of different slots ("gpu:0,1" and
    "gpu:1") never run jobs on the same card at once, while jobs on disjoint cards run side by side.
    Taken in index order (no deadlock between two runners) and released by the kernel even on kill -9."""

    def __init__(self, home: Path, devices: tuple[int, ...]) -> None:
        self.paths = [subdir(home, "locks") / f"gpu-{d}.lock" for d in sorted(devices)]
        self.fds: list[int] = []

    def __enter__(self) -> DeviceLocks:
        for path in self.paths:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)  # waits while another slot's job uses this card
            self.fds.append(fd)
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in reversed(self.fds):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self.fds.clear()


def _slot_devices(slot: str) -> tuple[int, ...]:
    """GPU indices of a slot name ("gpu:0,2" -> (0, 2); "cpu" -> ())."""
    if not slot.startswith("gpu:"):
        return ()
    return tuple(int(d) for d in slot[4:].split(",") if d.strip().isdigit())


def _run_child(store: Store, job: Job, slot: str) -> int:
    folder = job_dir(store.home, job.id, create=True)
    try:
        run = config_as(TrainConfig, job).run if job.kind == "train" else None
    except PayloadError:  # a malformed row: its engine fails the job, naming the field
        run = None
    argv, env = child_command(store.home, job.id, run, folder)
    with DeviceLocks(store.home, _slot_devices(slot)), (folder / "job.log").open("ab") as fh:
        code = run_warm(store.home, argv, env, fh.fileno())  # None: no warm engine could take it
        if code is None:
            code = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                  check=False, env=env).returncode
    return code


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
            if slot == CLUSTER_SLOT:  # submitted to SLURM and followed from here (engine.cluster)
                from engine.cluster.follow import run_cluster_job

                run_cluster_job(store, job)
            else:
                code = _run_child(store, job, slot)
                _settle(store, job.id, code)
            ran += 1
    finally:
        lock.release()
