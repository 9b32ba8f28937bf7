"""Job rows and the status state machine.

queued -> running -> completed | failed | cancelled | interrupted, and
interrupted | failed | cancelled -> queued (resume, retry). A queued job may also be
cancelled before it ever runs. Every move is a compare-and-set UPDATE, so two
processes racing on one job cannot both win.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlmodel import Session, select

from store.errors import IllegalTransition, NotFound
from store.models import Job, JobStatus, now

S = JobStatus
ALLOWED: dict[JobStatus, frozenset[JobStatus]] = {
    S.queued: frozenset({S.running, S.cancelled}),
    S.running: frozenset({S.completed, S.failed, S.cancelled, S.interrupted}),
    S.completed: frozenset(),
    S.failed: frozenset({S.queued}),
    S.cancelled: frozenset({S.queued}),
    S.interrupted: frozenset({S.queued}),
}
TERMINAL = frozenset({S.completed, S.failed, S.cancelled, S.interrupted})
ACTIVE = frozenset({S.queued, S.running})


def can_move(current: JobStatus | str, new: JobStatus | str) -> bool:
    """Whether the state machine allows `current -> new`."""
    return JobStatus(new) in ALLOWED[JobStatus(current)]


def create_job(
    session: Session, project_id: int, kind: str, config: dict[str, Any] | None = None, name: str = ""
) -> Job:
    """Insert a queued job and return it (with its id)."""
    job = Job(project_id=project_id, kind=kind, name=name, config=config or {})
    session.add(job)
    session.flush()
    return job


def get_job(session: Session, job_id: int) -> Job:
    """The job with this id, or NotFound."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id}")
    return job


def transition(session: Session, job_id: int, new: JobStatus | str, **fields: Any) -> None:
    """Move a job to `new` if the state machine allows it from its current status.

    `fields` are other columns set in the same UPDATE (error, pid, ...). Raises
    IllegalTransition, naming the current status, when the move is not allowed.
    """
    new = JobStatus(new)
    sources = [s.value for s, targets in ALLOWED.items() if new in targets]
    stamp = now()
    values: dict[str, Any] = {"updated_at": stamp, **fields}
    if new is S.running:
        values.setdefault("started_at", stamp)
        values.setdefault("heartbeat_at", stamp)
    elif new in TERMINAL:
        values.setdefault("finished_at", stamp)
    elif new is S.queued:
        values.update(finished_at=None, error=fields.get("error"), pid=None)
    sets = ", ".join(f"{col} = :{col}" for col in values)
    marks = ", ".join(f":src{i}" for i in range(len(sources)))
    params = {**values, "id": job_id, "new": new.value}
    params.update({f"src{i}": s for i, s in enumerate(sources)})
    where = f"id = :id AND status IN ({marks})" if sources else "0"
    result = session.execute(
        text(f"UPDATE jobs SET status = :new, {sets} WHERE {where}"),  # columns are ours, values bound
        params,
    )
    if result.rowcount != 1:
        row = session.execute(text("SELECT status FROM jobs WHERE id = :id"), {"id": job_id}).first()
        if row is None:
            raise NotFound(f"no job with id {job_id}")
        raise IllegalTransition(f"job {job_id} cannot move from {row[0]} to {new.value}")
    session.expire_all()


def jobs_changed_since(session: Session, since: float, project_id: int | None = None) -> list[Job]:
    """Jobs updated after `since` (the TUI's cheap poll)."""
    query = select(Job).where(Job.updated_at > since)
    if project_id is not None:
        query = query.where(Job.project_id == project_id)
    return list(session.exec(query.order_by(Job.updated_at)))
