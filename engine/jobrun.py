"""Running one job in this process: claim it, beat, run its handler, record how it ended."""

from __future__ import annotations

import contextlib
import errno
import resource
import signal
import threading
import traceback
from pathlib import Path

from engine.distributed import rank, world_size
from engine.handlers import handler_for
from engine.jobctx import JobCancelled, JobContext
from store.db import Store
from store.diskfull import disk_full_message
from store.errors import IllegalTransition, TunedeckError
from store.home import job_dir
from store.jobs import get_job, heartbeat, transition
from store.models import JobStatus

HEARTBEAT_EVERY_S = 5.0


def _print_exc() -> None:
    """The traceback into the job's log, unless that log is on a full disk."""
    with contextlib.suppress(OSError):
        traceback.print_exc()


def _beat(store: Store, job_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_EVERY_S):
        try:
            with store.write() as session:
                heartbeat(session, job_id)
        except Exception as exc:  # a missed beat must never kill the job
            with contextlib.suppress(OSError):  # the log may be on the disk that filled up
                print(f"heartbeat failed: {exc}", flush=True)


def _run_handler(ctx: JobContext, kind: str) -> tuple[JobStatus, str | None]:
    """Run the job's handler here (SIGTERM asks it to stop); its end as (status, error)."""
    signal.signal(signal.SIGTERM, lambda *_: ctx.stop_event.set())
    try:
        handler_for(kind)(ctx)
    except JobCancelled:
        return JobStatus.cancelled, "cancelled"
    except TunedeckError as exc:
        return JobStatus.failed, str(exc)
    except MemoryError:
        return JobStatus.failed, "out of memory"
    except OSError as exc:
        _print_exc()
        if exc.errno == errno.ENOSPC:
            return JobStatus.failed, disk_full_message(Path(exc.filename) if exc.filename else ctx.job_dir)
        return JobStatus.failed, f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")
    except Exception as exc:  # every failure must end the job row, not the process
        _print_exc()
        return JobStatus.failed, f"{type(exc).__name__}: {exc}"
    return JobStatus.completed, None


def execute_job(store: Store, job_id: int, pid: int, folder: Path | None = None) -> JobStatus:
    """Run job `job_id` here to its end; returns the final status (or raises IllegalTransition
    when the job was not queued, e.g. another runner took it). In a distributed job only rank 0
    claims the job, beats and records its end; the other ranks run the same handler silently.
    `folder` is the job's folder when it is not under the store's home (a cluster node's scratch store)."""
    folder = folder or job_dir(store.home, job_id, create=True)
    if rank() != 0:
        return _execute_follower(store, job_id, folder)
    with store.write() as session:
        transition(session, job_id, JobStatus.running, pid=pid, log_path=str(folder / "job.log"),
                   cancel_requested=False)
        job = get_job(session, job_id)
        kind, config = job.kind, dict(job.config)
    ctx = JobContext(store, job_id, config, folder)
    stop = threading.Event()
    beater = threading.Thread(target=_beat, args=(store, job_id, stop), daemon=True)
    beater.start()
    ranks = f" (rank 0 of {world_size()} processes)" if world_size() > 1 else ""
    ctx.log(f"job {job_id} ({kind}) started, pid {pid}{ranks}")
    try:
        final, error = _run_handler(ctx, kind)
    finally:
        stop.set()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    ctx.log(f"job {job_id} {final.value}" + (f": {error}" if error else "") + f" (peak RSS {peak_mb:.0f} MB)")
    try:
        ctx.set_result(peak_rss_mb=round(peak_mb, 1))
    except TunedeckError as exc:
        ctx.log(f"could not record the peak memory: {exc}")
    fields = {"error": error}
    if final is JobStatus.completed:
        fields["progress"] = 1.0
    try:
        with store.write() as session:
            transition(session, job_id, final, **fields)
    except IllegalTransition as exc:  # reaped as stale meanwhile (a very long stall): say so
        ctx.log(f"could not record the end: {exc}")
    return final


def _execute_follower(store: Store, job_id: int, folder: Path) -> JobStatus:
    """Rank > 0 of a distributed job: run the handler without writing to the store."""
    with store.read() as session:
        job = get_job(session, job_id)
        kind, config, status = job.kind, dict(job.config), job.status
    if status not in (JobStatus.queued.value, JobStatus.running.value):
        raise IllegalTransition(f"job {job_id} is {status}")
    final, error = _run_handler(JobContext(store, job_id, config, folder, main=False), kind)
    if final is JobStatus.failed:
        print(f"[rank {rank()}] job {job_id} failed: {error}", flush=True)
    return final
