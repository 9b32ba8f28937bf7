"""The engine on a cluster node: `python -m engine.cluster.node --job-dir D --id ID` (inside a SLURM job).

It never opens the home's database. Each process works against its own scratch store on node-local disk,
seeded from `cluster/snapshot.json` (the job, its project and the artifacts it names), and runs the job there
with the ordinary `execute_job`. Rank 0 also runs a forwarder that turns what the job writes to that store into
events in the shared job folder (see `engine.cluster.events`), which the local follower applies to the home.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from engine.cluster.events import EventWriter
from store.db import Store, open_store

FORWARD_EVERY_S = 1.0
OVERLAP_S = 5.0  # metrics re-read this far back: a row stamped before a read may commit after it


def snapshot(session: Any, job_id: int) -> dict[str, Any]:
    """What a scratch store needs of the home's rows to run job `job_id` (called on the submitting side)."""
    from store.models import Artifact, Job, Project
    from store.payloads import TrainConfig, config_as

    job = session.get(Job, job_id)
    project = session.get(Project, job.project_id)
    config = config_as(TrainConfig, job)
    ids = {config.model_artifact_id, config.reward_model_artifact_id} - {None}
    artifacts = [session.get(Artifact, i) for i in sorted(ids)]
    return {"job": job.model_dump(), "project": project.model_dump(),
            "artifacts": [a.model_dump() for a in artifacts if a is not None]}


def seed(store: Store, data: dict[str, Any]) -> None:
    """Put the snapshot's rows in a fresh scratch store, with their ids; the job queued."""
    from store.models import Artifact, Job, Project

    with store.write() as session:
        session.add(Project(**data["project"]))
        session.flush()
        for row in data["artifacts"]:
            session.add(Artifact(**{**row, "parent_id": None, "job_id": None}))
        job = {k: v for k, v in data["job"].items() if k in Job.model_fields}
        session.add(Job(**{**job, "status": "queued", "pid": None, "cancel_requested": False, "error": None,
                           "finished_at": None}))


class Forwarder:
    """Polls the scratch store and appends what changed as events (rank 0 only)."""

    def __init__(self, store: Store, job_id: int, writer: EventWriter) -> None:
        self.store, self.job_id, self.writer = store, job_id, writer
        self.sent: dict[tuple[int, str], float] = {}
        self.watermark = 0.0
        self.last_artifact = 0
        self.job_state: dict[str, Any] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()  # the poll thread and the training loop (before a checkpoint) both forward
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(FORWARD_EVERY_S):
            try:
                self.forward()
            except Exception as exc:  # a missed round must never kill the job; the next one catches up
                print(f"event forwarding failed: {exc}", flush=True)

    def forward(self) -> None:
        """Append the changes since the last call: metrics, artifacts, progress, result, status, heartbeat."""
        with self.lock:
            self._forward()

    def _forward(self) -> None:
        from sqlalchemy import text

        with self.store.read() as session:
            row = session.execute(text(
                "SELECT status, progress, step, total_steps, error, result, heartbeat_at FROM jobs WHERE id = :id"),
                {"id": self.job_id}).one()
            points = session.execute(text(
                "SELECT step, name, value, created_at FROM metrics WHERE job_id = :id AND created_at > :since "
                "ORDER BY created_at"), {"id": self.job_id, "since": self.watermark - OVERLAP_S}).all()
            artifacts = session.execute(text(
                "SELECT id, project_id, parent_id, kind, name, path, size, sha256, meta, created_at FROM artifacts "
                "WHERE job_id = :id AND id > :last ORDER BY id"), {"id": self.job_id, "last": self.last_artifact}
            ).mappings().all()
        events: list[dict[str, Any]] = []
        new = [[s, n, v, t] for s, n, v, t in points if self.sent.get((s, n)) != v]
        if new:
            events.append({"type": "metrics", "points": new})
            self.sent.update({(s, n): v for s, n, v, _ in new})
            self.watermark = max(self.watermark, max(p[3] for p in new))
        for art in artifacts:
            meta = json.loads(art["meta"]) if isinstance(art["meta"], str) else art["meta"]
            events.append({"type": "artifact", **dict(art), "meta": meta})
            self.last_artifact = art["id"]
        status, progress, step, total, error, result, beat = row
        result = json.loads(result) if isinstance(result, str) else result
        state = {"progress": (progress, step, total), "result": result, "status": (status, error), "beat": beat}
        if state["progress"] != self.job_state.get("progress"):
            events.append({"type": "progress", "progress": progress, "step": step, "total_steps": total})
        if result and result != self.job_state.get("result"):
            events.append({"type": "result", "result": result})
        if status != "queued" and state["status"] != self.job_state.get("status"):
            events.append({"type": "status", "status": status, "error": error})
        if not events and status == "running" and beat != self.job_state.get("beat"):
            events.append({"type": "heartbeat"})  # the job's own heartbeat thread moved it (every 5 s)
        self.job_state = state
        self.writer.write(events)

    def start(self) -> None:
        self.thread.start()

    def finish(self) -> None:
        """Stop polling and forward what is left."""
        self.stop.set()
        self.thread.join()
        self.forward()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.cluster.node")
    parser.add_argument("--job-dir", required=True, type=Path)
    parser.add_argument("--id", required=True, type=int)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)

    from engine.cluster.slurm import events_file
    from engine.distributed import rank
    from engine.jobctx import on_checkpoint
    from engine.jobrun import execute_job
    from engine.quiet import quiet_library_output

    data = json.loads((args.job_dir / "cluster" / "snapshot.json").read_text())
    local = os.environ.get("SLURM_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    scratch = Path(tempfile.mkdtemp(prefix=f"tunedeck-{args.id}-rank{rank()}-", dir=local))
    forwarder = None
    try:
        store = open_store(scratch)
        seed(store, data)
        if rank() == 0:
            events = events_file(args.job_dir, os.environ.get("SLURM_JOB_ID", "local"))
            forwarder = Forwarder(store, args.id, EventWriter(events))
            forwarder.start()
            on_checkpoint(forwarder.forward)  # a kill after a checkpoint must find its metrics already forwarded
        quiet_library_output()
        status = execute_job(store, args.id, os.getpid(), folder=args.job_dir)
        return 0 if status.value == "completed" else 1
    finally:
        if forwarder is not None:
            forwarder.finish()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
