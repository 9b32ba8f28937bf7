"""Running one job in this process: claim it, beat, run its handler, record how it ended."""

from __future__ import annotations

import resource
import signal
import threading
import traceback
from pathlib import Path

from engine.handlers import handler_for
from engine.jobctx import JobCancelled, JobContext
from store.db import Store
from store.errors import IllegalTransition, TunedeckError
from store.home import subdir
from store.jobs import get_job, heartbeat, transition
from store.models import JobStatus

HEARTBEAT_EVERY_S = 5.0


def job_dir(home: Path, job_id: int) -> Path:
    """The folder of a job's log, config and outputs."""
    return subdir(home, "jobs", str(job_id))


def _beat(store: Store, job_id: int, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT_EVERY_S):
        try:
            with store.write() as session:
                heartbeat(session, job_id)
        except Exception as exc:  # a missed beat must never kill the job
            print(f"heartbeat failed: {exc}", flush=True)


def execute_job(store: Store, job_id: int, pid: int) -> JobStatus:
    """Run job `job_id` here to its end; returns the final status (or raises IllegalTransition
    when the job was not queued, e.g. another runner took it)."""
    folder = job_dir(store.home, job_id)
    with store.write() as session:
        transition(session, job_id, JobStatus.running, pid=pid, log_path=str(folder / "job.log"),
                   cancel_requested=False)
        job = get_job(session, job_id)
        kind, config = job.kind, dict(job.config)
    ctx = JobContext(store, job_id, config, folder)
    signal.signal(signal.SIGTERM, lambda *_: ctx.stop_event.set())
    stop = threading.Event()
    beater = threading.Thread(target=_beat, args=(store, job_id, stop), daemon=True)
    beater.start()
    ctx.log(f"job {job_id} ({kind}) started, pid {pid}")
    final, error = JobStatus.completed, None
    try:
        handler_for(kind)(ctx)
    except JobCancelled:
        final, error = JobStatus.cancelled, "cancelled"
    except TunedeckError as exc:
        final, error = JobStatus.failed, str(exc)
    except MemoryError:
        final, error = JobStatus.failed, "out of memory"
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        final, error = JobStatus.failed, f"{exc.strerror or exc}{where}"
        traceback.print_exc()
    except Exception as exc:  # every failure must end the job row, not the process
        traceback.print_exc()
        final, error = JobStatus.failed, f"{type(exc).__name__}: {exc}"
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
