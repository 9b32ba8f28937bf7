"""The job verbs both faces call: read, list, cancel, move in the queue, wait for and follow a job.

Every read first marks running jobs whose engine stopped beating as interrupted (store.jobs.reap_stale), so the
command line and the app never show a dead job as running. SQLAlchemy loads inside the functions (on the first
write), not when the app starts.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from core.progress import EtaEstimator, ProgressView, observe_job
from store.db import Store
from store.errors import Refused
from store.home import job_log

if TYPE_CHECKING:
    from store.models import Job

ACTIVE = ("queued", "running")
FINAL = frozenset({"completed", "failed", "cancelled", "interrupted"})


def reap_stale_jobs(store: Store) -> list[int]:
    """Mark running jobs whose engine stopped beating (or is gone) interrupted; returns their ids."""
    from store.jobs import reap_stale

    with store.write() as session:
        return reap_stale(session)


def read_job(store: Store, job_id: int) -> Job:
    """Job `job_id`, after marking stale running jobs interrupted (every reader does)."""
    from store.jobs import get_job, reap_stale

    with store.write() as session:
        reap_stale(session)
        return get_job(session, job_id)


def list_jobs(store: Store, project: str | None = None, kind: str | None = None, limit: int = 500) -> list[Job]:
    """Jobs newest first (only `project`'s, only of `kind`), after marking stale ones interrupted."""
    from store.jobs import reap_stale
    from store.projects import get_project
    from store.views import list_jobs as query

    with store.write() as session:
        reap_stale(session)
        project_id = get_project(session, project).id if project else None
        return query(session, project_id=project_id, kind=kind, limit=limit)


def cancel_refusal(job_id: int, status: str, noun: str = "job") -> str | None:
    """Why job `job_id` cannot be cancelled as it is now (None: it can). `noun` names it (job, run)."""
    if status in ACTIVE:
        return None
    return f"{noun} {job_id} is {status}; only queued or running {noun}s can be cancelled"


def cancel_job(store: Store, job_id: int) -> str:
    """Cancel a queued job at once, or ask a running one to stop (a run saves a checkpoint first); returns its
    status afterwards: "cancelled", or "running" while the engine winds down."""
    from store.jobs import get_job, request_cancel

    with store.write() as session:
        job = get_job(session, job_id)
        refusal = cancel_refusal(job_id, job.status, "run" if job.kind == "train" else "job")
        if refusal:
            raise Refused(refusal)
        return request_cancel(session, job_id)


def cancel_message(job_id: int, status: str) -> str:
    """What a face says after `cancel_job` returned `status`."""
    return f"job {job_id} cancelled" if status == "cancelled" else f"job {job_id}: asked the engine to stop"


def move_job(store: Store, job_id: int, offset: int) -> int:
    """Move a queued job `offset` places in its slot's queue (negative: it runs sooner); returns its new place
    (0 = next)."""
    from store.jobs import move_in_queue

    with store.write() as session:
        return move_in_queue(session, job_id, offset)


def job_progress(store: Store, job: Job, est: EtaEstimator, label: str) -> ProgressView:
    """What a progress line says about `job` now (status, step, loss, tokens/s, ETA); feeds `est` its progress."""
    from store.views import latest_values

    view = ProgressView(label, job.status, step=job.step, total=job.total_steps, fraction=job.progress)
    if job.status == "running":
        observe_job(est, job.step, job.total_steps, job.progress, job.heartbeat_at)
        view.eta_s = est.eta(time.time())
    if job.kind == "train":
        with store.raw() as conn:
            latest = latest_values(conn, int(job.id), ("loss", "tokens_per_s"))  # type: ignore[arg-type]
        view.loss, view.tokens_per_s = latest.get("loss"), latest.get("tokens_per_s")
    return view


def watch_job(store: Store, job_id: int, every_s: float = 0.25) -> Iterator[Job]:
    """Read job `job_id` every `every_s` seconds, yielding each read; the last one yielded has ended."""
    while True:
        job = read_job(store, job_id)
        yield job
        if job.status in FINAL:
            return
        time.sleep(every_s)


def log_path(store: Store, job: Job) -> Path:
    """The file job `job` logs to: the one its row names, else `<home>/jobs/<id>/job.log`."""
    return Path(job.log_path) if job.log_path else job_log(store.home, int(job.id))  # type: ignore[arg-type]


def follow_log(store: Store, job_id: int, follow: bool = False, every_s: float = 0.5) -> Iterator[str]:
    """Job `job_id`'s log as text chunks: what is there now, and with `follow` what it writes until it ends."""
    job = read_job(store, job_id)
    offset = 0
    while True:
        path = log_path(store, job)
        if path.exists():
            with path.open("rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
            offset += len(chunk)
            if chunk:
                yield chunk.decode("utf-8", "replace")
        if not follow or job.status in FINAL:
            return
        time.sleep(every_s)
        job = read_job(store, job_id)
