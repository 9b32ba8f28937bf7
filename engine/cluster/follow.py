"""The local side of a cluster job: queue it for the `slurm` slot, submit it (or find its SLURM job again), and
follow its event file into the home's database until it ends. Runs inside the detached runner of that slot, so
it survives a closed TUI or a dropped SSH session; a restarted runner re-attaches to a job SLURM still runs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from engine.cluster import slurm
from engine.cluster.events import EventReader
from store.db import Store
from store.errors import IllegalTransition, TunedeckError
from store.home import job_dir, subdir
from store.jobs import get_job, heartbeat, set_result, transition
from store.metrics import upsert_metrics
from store.models import Artifact, Job, JobStatus
from store.payloads import TrainConfig, config_as

POLL_S = 0.5
STATE_EVERY_S = 2.0
CANCEL_GRACE_S = 120.0  # after scancel --signal=TERM, how long the engine may take to checkpoint and stop
SETTLE_S = 2.0  # after SLURM says the job ended: time for the last events to show on a shared filesystem
FINAL = frozenset({"completed", "failed", "cancelled", "interrupted"})


def queue_cluster_run(store: Store, project: str, cfg: Any, opts: slurm.ClusterOptions) -> int:
    """Validate and queue a run like `run new`, for the cluster: the job goes to the `slurm` slot, whose runner
    submits and follows it. Returns the job id."""
    from engine.launch import start_runner
    from engine.train.queue import queue_run

    opts.check()
    slurm.require_commands()
    job_id = queue_run(store, project, cfg, start=False, slot=slurm.SLOT, extra={"cluster": opts.to_config()})
    start_runner(store.home, slurm.SLOT)
    return job_id


def _log(folder: Path, message: str) -> None:
    with (folder / "job.log").open("a") as fh:
        fh.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")


def _submit(store: Store, job: Job, folder: Path) -> str:
    """Write the snapshot and scripts into the job folder and sbatch it; records the SLURM id."""
    import json

    from engine.cluster.node import snapshot

    cdir = subdir(folder, "cluster")
    config = config_as(TrainConfig, job)
    config.require("cluster")
    opts = slurm.ClusterOptions.from_config(config.cluster or {})
    run = config.run
    with store.read() as session:
        data = snapshot(session, job.id)
    (cdir / "snapshot.json.tmp").write_text(json.dumps(data, default=str))
    (cdir / "snapshot.json.tmp").replace(cdir / "snapshot.json")
    if slurm.processes_per_node(opts, run) * opts.nodes > 1:
        slurm.write_accelerate_config(opts, run, cdir / "accelerate.yaml")
    script = cdir / "job.sbatch"
    (cdir / "job.sbatch.tmp").write_text(slurm.batch_script(opts, run, job.id, folder))
    (cdir / "job.sbatch.tmp").replace(script)
    slurm_id = slurm.submit(script)
    (cdir / "slurm_job.tmp").write_text(slurm_id + "\n")
    (cdir / "slurm_job.tmp").replace(cdir / "slurm_job")
    _log(folder, f"submitted to SLURM as job {slurm_id}" + (f" (partition {opts.partition})" if opts.partition else ""))
    return slurm_id


def current_slurm_job(folder: Path) -> str | None:
    """The SLURM id of the job's latest submission, if any."""
    try:
        return (folder / "cluster" / "slurm_job").read_text().strip() or None
    except FileNotFoundError:
        return None


class Applier:
    """Applies a cluster job's events to the home's database (idempotent)."""

    def __init__(self, store: Store, job_id: int, folder: Path) -> None:
        self.store, self.job_id, self.folder = store, job_id, folder
        self.artifact_ids: dict[int, int] = {}  # scratch id -> home id
        self.ended = False  # a final status came
        self.lags: list[float] = []  # seconds from a metric's write on the node to its upsert here

    def apply(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        with self.store.write() as session:
            for event in events:
                self._apply(session, event)

    def _apply(self, session: Any, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "status":
            self._status(session, str(event.get("status")), event.get("error"))
        elif kind == "progress":
            fields = {k: event[k] for k in ("progress", "step", "total_steps") if event.get(k) is not None}
            heartbeat(session, self.job_id, **fields)
        elif kind == "heartbeat":
            heartbeat(session, self.job_id)
        elif kind == "metrics":
            by_step: dict[int, dict[str, float]] = {}
            for step, name, value, _t in event.get("points", []):
                by_step.setdefault(int(step), {})[str(name)] = float(value)
            for step, values in by_step.items():
                upsert_metrics(session, self.job_id, step, values)
            now = time.time()
            self.lags += [now - float(p[3]) for p in event.get("points", [])]
        elif kind == "artifact":
            self._artifact(session, event)
        elif kind == "result":
            result = dict(event.get("result") or {})
            if result.get("artifact_id") in self.artifact_ids:
                result["artifact_id"] = self.artifact_ids[result["artifact_id"]]
            set_result(session, self.job_id, result)

    def _status(self, session: Any, status: str, error: str | None) -> None:
        job = get_job(session, self.job_id)
        try:
            if status == "running" and job.status == JobStatus.queued.value:
                transition(session, self.job_id, JobStatus.running, pid=os.getpid(),
                           log_path=str(self.folder / "job.log"))
            elif status in FINAL:
                self.ended = True
                if status == "cancelled" and not job.cancel_requested:
                    # SIGTERM from SLURM itself (time limit, preemption, a node set down, an admin's scancel):
                    # the engine saved a checkpoint and stopped; the run did not end, it was interrupted.
                    status, error = "interrupted", ("stopped by SLURM (time limit, preemption, node down or a "
                                                    "scancel on the cluster) after saving a checkpoint; "
                                                    "`tunedeck run resume` continues from it")
                    _log(self.folder, f"recorded as interrupted: {error}")
                fields: dict[str, Any] = {"error": error}
                if status == "completed":
                    fields["progress"] = 1.0
                transition(session, self.job_id, status, **fields)
        except IllegalTransition:
            pass  # applied before (a re-read), or the job ended here meanwhile

    def _artifact(self, session: Any, event: dict[str, Any]) -> None:
        from sqlmodel import select

        found = session.exec(select(Artifact).where(Artifact.job_id == self.job_id,
                                                    Artifact.path == event["path"])).first()
        if found is None:
            found = Artifact(project_id=event["project_id"], job_id=self.job_id, parent_id=event.get("parent_id"),
                             kind=event["kind"], name=event.get("name") or "", path=event["path"],
                             size=int(event.get("size") or 0), sha256=event.get("sha256") or "",
                             meta=event.get("meta") or {})
            session.add(found)
            session.flush()
            if found.id != event["id"]:  # the job's log names the node's scratch id
                _log(self.folder, f"artifact {event['id']} on the node is artifact {found.id} here")
        self.artifact_ids[int(event["id"])] = int(found.id)


def _end_without_event(store: Store, job_id: int, slurm_id: str, state: str) -> None:
    """SLURM ended the job before its engine recorded an end (killed, node failure, time limit): the run is
    interrupted and resumable, or cancelled when a cancel was asked."""
    with store.write() as session:
        job = get_job(session, job_id)
        if job.status not in (JobStatus.queued.value, JobStatus.running.value):
            return
        if job.status == JobStatus.queued.value:
            transition(session, job_id, JobStatus.running, pid=os.getpid())
        if job.cancel_requested:
            transition(session, job_id, JobStatus.cancelled, error=f"cancelled (SLURM job {slurm_id} {state})")
        else:
            error = (f"SLURM job {slurm_id} ended ({state}) before the engine recorded its end; "
                     "`tunedeck run resume` continues from the last checkpoint")
            transition(session, job_id, JobStatus.interrupted, error=error)
            _log(job_dir(store.home, job_id, create=True), f"interrupted: {error}")


def _engine_ended(folder: Path, slurm_id: str) -> bool:
    """Whether that submission's engine recorded its end (its SLURM job may still be exiting)."""
    return any(e["type"] == "status" and e.get("status") in FINAL
               for e in EventReader(slurm.events_file(folder, slurm_id)).read_new())


def _wait_gone(slurm_id: str, timeout: float = CANCEL_GRACE_S) -> None:
    """Wait for an earlier submission to leave SLURM, scancelling it if it lingers."""
    deadline = time.monotonic() + timeout
    while slurm.state(slurm_id) in slurm.ALIVE:
        if time.monotonic() > deadline:
            slurm.cancel(slurm_id)
            deadline = time.monotonic() + timeout
        time.sleep(1.0)


def run_cluster_job(store: Store, job: Job) -> None:
    """Submit a queued cluster job (or re-attach to the SLURM job still running it) and follow it to its end."""
    folder = job_dir(store.home, job.id, create=True)
    slurm_id = current_slurm_job(folder)
    if slurm_id is not None and slurm.state(slurm_id) in slurm.ALIVE and not _engine_ended(folder, slurm_id):
        _log(folder, f"following SLURM job {slurm_id} again")  # the runner that followed it is gone
    else:
        if slurm_id is not None:
            _wait_gone(slurm_id)  # never two engines on one job's checkpoints
        try:
            slurm_id = _submit(store, job, folder)
        except (TunedeckError, OSError, KeyError) as exc:
            with store.write() as session:
                transition(session, job.id, JobStatus.running, pid=os.getpid())
                transition(session, job.id, JobStatus.failed, error=f"could not submit to SLURM: {exc}")
            return
    follow(store, job.id, slurm_id, folder)


def follow(store: Store, job_id: int, slurm_id: str, folder: Path) -> Applier:
    """Apply the SLURM job's events until the run ends; cancel maps to scancel."""
    reader = EventReader(slurm.events_file(folder, slurm_id))
    applier = Applier(store, job_id, folder)
    signalled: float | None = None
    next_state = 0.0
    while True:
        applier.apply(reader.read_new())
        with store.read() as session:
            job = get_job(session, job_id)
        if job.status in FINAL:
            if not applier.ended:  # cancelled while pending, or given up here: the cluster must stop too
                slurm.cancel(slurm_id)
            return applier
        now = time.monotonic()
        if job.cancel_requested and signalled is None:
            running = job.status == JobStatus.running.value
            slurm.cancel(slurm_id, "TERM" if running else None)  # TERM: checkpoint, then stop
            _log(folder, f"cancel: scancel {'--signal=TERM ' if running else ''}{slurm_id}")
            signalled = now
        elif signalled is not None and now - signalled > CANCEL_GRACE_S:
            slurm.cancel(slurm_id)
        if now >= next_state:
            next_state = now + STATE_EVERY_S
            state = slurm.state(slurm_id)
            if state not in slurm.ALIVE:
                time.sleep(SETTLE_S)
                applier.apply(reader.read_new())
                _end_without_event(store, job_id, slurm_id, state)
                return applier
        time.sleep(POLL_S)
