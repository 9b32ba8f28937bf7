"""The training-run verbs both faces call: queue, resume, retry, delete, prune, export and a run's summary.

The checks and their messages live here once: `tunedeck run resume 3` and `r` on the run screen refuse a
completed run with the same words. Engine modules (the queue, cleanup, the runner launcher) load inside the
functions, never when the app starts.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.db import Store
from store.errors import Refused

if TYPE_CHECKING:
    from engine.cleanup import RunDeleted
    from engine.cluster.slurm import ClusterOptions
    from engine.train.config import RunConfig
    from store.models import Job

REQUEUABLE = ("failed", "cancelled", "interrupted")


def not_a_run(job_id: int, kind: str) -> str | None:
    """Why job `job_id` is not a training run (None: it is one)."""
    return None if kind == "train" else f"job {job_id} is a {kind} job, not a training run"


def requeue_refusal(job_id: int, kind: str, status: str, fresh: bool) -> str | None:
    """Why run `job_id` cannot be resumed (or with `fresh` retried) as it is now; None when it can."""
    if (reason := not_a_run(job_id, kind)) is not None:
        return reason
    if status not in REQUEUABLE:
        verb = "retried" if fresh else "resumed"
        return f"run {job_id} is {status}; only failed, cancelled or interrupted runs can be {verb}"
    return None


def _requeue(store: Store, job_id: int, fresh: bool) -> str:
    from engine.launch import start_runner
    from engine.train.queue import reset_checkpoints
    from store.jobs import get_job, reap_stale, transition

    with store.write() as session:
        reap_stale(session)
        job = get_job(session, job_id)
        kind, status, slot, step = job.kind, job.status, job.slot, job.step
    refusal = requeue_refusal(job_id, kind, status, fresh)
    if refusal:
        raise Refused(refusal)
    if fresh:
        reset_checkpoints(store, job_id)
    with store.write() as session:
        transition(session, job_id, "queued", cancel_requested=False, step=0 if fresh else step)
    start_runner(store.home, slot)
    return f"run {job_id} queued again " + ("from the start" if fresh else "from its last checkpoint")


def resume_run(store: Store, job_id: int) -> str:
    """Queue a failed, cancelled or interrupted run again to continue from its last checkpoint, and start its
    runner; returns what to tell the user."""
    return _requeue(store, job_id, fresh=False)


def retry_run(store: Store, job_id: int) -> str:
    """Queue a failed, cancelled or interrupted run again from the start (its checkpoints and metrics deleted
    first), and start its runner; returns what to tell the user."""
    return _requeue(store, job_id, fresh=True)


def cluster_options(**options: Any) -> ClusterOptions:
    """Where and how a run goes on a SLURM cluster (partition, nodes, time, gpus_per_node, cpus_per_task,
    sbatch_args), for `queue_run`."""
    from engine.cluster.slurm import ClusterOptions

    return ClusterOptions(**options)


def queue_run(store: Store, project: str, cfg: RunConfig, cluster: ClusterOptions | None = None) -> int:
    """Validate and queue a training run of `project` (on a SLURM cluster with `cluster`); returns its job id."""
    if cluster is not None:
        from engine.cluster.follow import queue_cluster_run

        return queue_cluster_run(store, project, cfg, cluster)
    from engine.train.queue import queue_run as queue

    return queue(store, project, cfg)


def read_run(store: Store, job_id: int) -> Job:
    """Training run `job_id` (refused for another kind of job), after marking stale jobs interrupted."""
    from core.jobs import read_job

    job = read_job(store, job_id)
    if (reason := not_a_run(job_id, job.kind)) is not None:
        raise Refused(reason)
    return job


def run_summary(store: Store, job_id: int) -> dict[str, Any]:
    """Run `job_id`'s row as a dict, with its latest value of each metric under `metrics` ({name: {step,
    value}})."""
    from store.metrics import latest_metrics

    job = read_run(store, job_id)
    with store.raw() as conn:
        latest = latest_metrics(conn, job_id)
    data = job.model_dump()
    data["metrics"] = {name: {"step": step, "value": value} for name, (step, value) in sorted(latest.items())}
    return data


def delete_run(store: Store, job_id: int, force: bool = False) -> RunDeleted:
    """Delete an ended run with its metrics and files; with `force` also the artifacts it made (and what derives
    from them). Refused while it is queued or running, and without `force` when it made artifacts."""
    from engine.cleanup import delete_run as delete

    return delete(store, job_id, force=force)


def prune_runs(store: Store, project: str | None = None) -> list[tuple[int, int, int]]:
    """Remove completed runs' checkpoints (their outputs stay): (job id, checkpoints removed, bytes freed)."""
    from engine.cleanup import prune_checkpoints

    return prune_checkpoints(store, project)


@dataclass(frozen=True)
class RunExport:
    """A run written out as a standalone config: the file and the command that reproduces the run."""

    path: Path
    command: str


def export_run(store: Store, job_id: int, out: Path | None = None) -> RunExport:
    """Write run `job_id`'s config as YAML (default `run-ID.yaml` here), headed by the command that queues it
    again and its dataset's content hash; written to a temporary name, then renamed."""
    from store.models import Project

    job = read_run(store, job_id)
    with store.read() as session:
        project = session.get(Project, job.project_id)
    assert project is not None  # a job's project cannot go while it has jobs (foreign key)
    out = out or Path(f"run-{job.id}.yaml")
    command = f"tunedeck run new {shlex.quote(project.name)} --config {shlex.quote(str(out))}"
    header = (f"# tunedeck run {job.id} of project {project.name}\n# reproduce: {command}\n"
              f"# dataset {job.config.get('dataset_id')} content hash {job.config.get('dataset_hash')}\n")
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(header + job.config.get("run_yaml", ""), encoding="utf-8")
    tmp.replace(out)
    return RunExport(out, command)
