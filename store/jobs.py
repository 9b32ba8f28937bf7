"""Job rows and the status state machine.

queued -> running -> completed | failed | cancelled | interrupted, and
interrupted | failed | cancelled -> queued (resume, retry). A queued job may also be
cancelled before it ever runs. Every move is a compare-and-set UPDATE, so two
processes racing on one job cannot both win.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sqlalchemy import func, text
from sqlmodel import Session, select

from store.errors import IllegalTransition, NotFound
from store.models import Job, JobStatus, now
from store.payloads import for_write_config, for_write_result

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


STALE_AFTER_S = 60.0  # engines beat every few seconds; a minute of silence means the process is gone


def create_job(
    session: Session,
    project_id: int,
    kind: str,
    config: dict[str, Any] | None = None,
    name: str = "",
    slot: str = "cpu",
) -> Job:
    """Insert a queued job for runner slot `slot` and return it (with its id). The config is checked against the
    kind's model (store.payloads): a wrong type or an unknown field raises PayloadError and nothing is inserted."""
    job = Job(project_id=project_id, kind=kind, name=name, config=for_write_config(kind, config), slot=slot)
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


QUEUE_ORDER_SQL = "coalesce(queue_pos, id), id"
"""How a slot's queued jobs are ordered: by queue position, which is the id unless the job was moved."""


def queue_order() -> tuple[Any, Any]:
    """QUEUE_ORDER_SQL as SQLModel order_by terms."""
    return func.coalesce(Job.queue_pos, Job.id), Job.id


def next_queued(session: Session, slot: str) -> Job | None:
    """The first queued job of a runner slot, in queue order (oldest first unless one was moved)."""
    query = select(Job).where(Job.slot == slot, Job.status == S.queued.value).order_by(*queue_order())
    return session.exec(query).first()


def move_in_queue(session: Session, job_id: int, offset: int) -> int:
    """Move a queued job `offset` places (-1 up: it runs sooner, +1 down) within its slot's queue, past
    queued jobs only; returns its new 0-based place. A job already first (or last) stays where it is."""
    job = get_job(session, job_id)
    if job.status != S.queued.value:
        raise IllegalTransition(f"job {job_id} is {job.status}; only queued jobs can be moved in the queue")
    rows = session.execute(
        text(f"SELECT id, coalesce(queue_pos, id) FROM jobs WHERE slot = :slot AND status = 'queued' "
             f"ORDER BY {QUEUE_ORDER_SQL}"), {"slot": job.slot},
    ).all()
    ids = [int(r[0]) for r in rows]
    place = ids.index(job_id)
    target = max(0, min(len(ids) - 1, place + offset))
    if target == place:
        return place
    keys = [float(r[1]) for r in rows]  # sorted; the moved list takes them over place by place
    for i in range(1, len(keys)):  # ties (a requeued job's id equal to a moved job's position) spread apart
        keys[i] = max(keys[i], keys[i - 1] + 1e-6)
    ids.insert(target, ids.pop(place))
    stamp = now()
    for jid, key in zip(ids, keys, strict=True):
        session.execute(text("UPDATE jobs SET queue_pos = :pos, updated_at = :t WHERE id = :id"),
                        {"pos": key, "t": stamp, "id": jid})
    session.expire_all()
    return target


def request_cancel(session: Session, job_id: int) -> str:
    """Cancel a job: a queued one at once, a running one by asking its engine to stop.

    Returns the job's status afterwards ("cancelled", or "running" while the engine winds down).
    """
    job = get_job(session, job_id)
    if job.status == S.queued.value:
        try:
            transition(session, job_id, S.cancelled, error="cancelled before it started")
            return S.cancelled.value
        except IllegalTransition:
            job = get_job(session, job_id)  # a runner took it meanwhile: ask the engine instead
    if job.status != S.running.value:
        raise IllegalTransition(f"job {job_id} is {job.status}; only queued or running jobs can be cancelled")
    session.execute(
        text("UPDATE jobs SET cancel_requested = 1, updated_at = :t WHERE id = :id"), {"t": now(), "id": job_id}
    )
    return S.running.value


def cancel_requested(session: Session, job_id: int) -> bool:
    """Whether someone asked this job to stop."""
    row = session.execute(text("SELECT cancel_requested FROM jobs WHERE id = :id"), {"id": job_id}).first()
    return bool(row and row[0])


def heartbeat(session: Session, job_id: int, **fields: Any) -> None:
    """Record that a running job's engine is alive, with optional progress fields (step, progress...)."""
    values = {"heartbeat_at": now(), **fields}
    values["updated_at"] = values["heartbeat_at"]
    sets = ", ".join(f"{col} = :{col}" for col in values)
    session.execute(
        text(f"UPDATE jobs SET {sets} WHERE id = :id AND status = 'running'"),  # columns are ours
        {**values, "id": job_id},
    )


def reap_stale(session: Session, stale_after: float = STALE_AFTER_S) -> list[int]:
    """Mark running jobs whose heartbeat went stale as interrupted; returns their ids.

    Whoever reads job state calls this first, so a job killed with -9 (or a machine
    that lost power) never shows as running forever.
    """
    cutoff = now() - stale_after
    running = session.exec(select(Job.id, Job.pid, Job.started_at, Job.heartbeat_at)
                           .where(Job.status == S.running.value)).all()
    reaped = []
    for job_id, pid, started_at, beat in running:
        if beat is not None and beat >= cutoff and not process_gone(pid, started_at):
            continue
        why = ("the engine process is gone (killed, or the machine restarted)" if beat is not None and beat >= cutoff
               else "the engine stopped responding (no heartbeat)")
        try:
            transition(session, job_id, S.interrupted, error=why)
            reaped.append(job_id)
        except IllegalTransition:
            pass  # it finished meanwhile
    return reaped


def process_gone(pid: int | None, started_at: float | None) -> bool:
    """Whether the process that runs a job is certainly gone from this machine: no such pid, or a pid
    reused by a process that started after the job did. Unknown is "not gone" (the heartbeat decides)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # it exists, under another user
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    if fields[0] in {"Z", "X"}:  # a zombie: killed, but its new parent (init) has not reaped it yet
        return True
    if started_at is None:
        return False
    try:
        ticks = int(fields[19])  # field 22 of /proc/PID/stat: start time in clock ticks since boot
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, ValueError, IndexError, StopIteration):
        return False
    return boot + ticks / os.sysconf("SC_CLK_TCK") > started_at + 5.0  # the pid was reused


def set_result(session: Session, job_id: int, result: dict[str, Any]) -> None:
    """Add to what a job produced (dataset or artifact ids...). The new fields are checked against the kind's
    model (store.payloads): PayloadError, naming the kind and the field, and the stored result stays as it was.
    Fields stored before (perhaps by an older version) are kept as they are."""
    job = get_job(session, job_id)
    job.result = {**job.result, **for_write_result(job.kind, result)}
    job.updated_at = now()
    session.add(job)
    session.flush()
