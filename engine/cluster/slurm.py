"""SLURM through its commands (sbatch, squeue, scontrol, scancel): the options of a cluster run, the batch
script that starts the engine on the allocated nodes, and the job's state. Light: no torch here."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.distributed import LaunchPlan, accelerate_config, plan_for
from engine.launch import PACKAGE_ROOT
from store.errors import Refused, TunedeckError

SLOT = "slurm"  # the runner slot whose runner submits and follows cluster jobs
ALIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING",
                   "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT"})
TIME_RE = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$")  # SLURM's MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]
PORT = 29517  # the rendezvous port on the first node (the allocation is the job's own)
TIMEOUT_S = 60


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how a run is submitted; stored in the job's config under `cluster`."""

    partition: str | None = None
    nodes: int = 1
    time: str | None = None
    gpus_per_node: int = 0
    cpus_per_task: int | None = None
    sbatch_args: list[str] = field(default_factory=list)
    kind: str = "slurm"

    def check(self) -> ClusterOptions:
        """Refuse options SLURM would refuse later, naming the option."""
        if self.nodes < 1:
            raise Refused(f"--nodes {self.nodes}: at least 1")
        if self.gpus_per_node < 0:
            raise Refused(f"--gpus-per-node {self.gpus_per_node}: 0 or more")
        if self.cpus_per_task is not None and self.cpus_per_task < 1:
            raise Refused(f"--cpus-per-task {self.cpus_per_task}: at least 1")
        if self.time is not None and not TIME_RE.match(self.time):
            raise Refused(f"--time {self.time!r}: expected HH:MM:SS, MM, MM:SS or D-HH:MM:SS")
        for arg in self.sbatch_args:
            if not arg.startswith("-") or any(c in arg for c in "\n\r\0"):
                raise Refused(f"--sbatch-arg {arg!r}: one sbatch option on one line, e.g. --account=lab")
        if self.partition is not None and not re.fullmatch(r"[\w.,-]+", self.partition):
            raise Refused(f"--partition {self.partition!r}: letters, digits, '_', '-', '.' and ',' only")
        return self

    @classmethod
    def from_config(cls, data: dict[str, Any]) -> ClusterOptions:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def to_config(self) -> dict[str, Any]:
        return asdict(self)


def require_commands() -> None:
    """Refuse before queueing when the SLURM client commands are missing here."""
    missing = [c for c in ("sbatch", "squeue", "scancel", "scontrol") if shutil.which(c) is None]
    if missing:
        raise Refused(f"--cluster slurm: {', '.join(missing)} not found on PATH (run tunedeck on a machine that "
                      "can submit to the cluster, e.g. its login node)")


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TunedeckError(f"{argv[0]}: {exc}") from None


def processes_per_node(opts: ClusterOptions, run: dict[str, Any]) -> int:
    """One process per allocated GPU, else the run's cpu_processes."""
    return opts.gpus_per_node or plan_for(run).processes


def events_file(job_dir: Path, slurm_id: str) -> Path:
    """The event file of one submission of a job (each resubmission writes its own)."""
    return job_dir / "cluster" / f"events-{slurm_id}.jsonl"


def batch_script(opts: ClusterOptions, run: dict[str, Any], job_id: int, job_dir: Path) -> str:
    """The sbatch script of a run: srun starts one task per node; each task runs the engine directly (one
    process in all) or through `accelerate launch` (several processes, over several nodes)."""
    q = shlex.quote
    per_node = processes_per_node(opts, run)
    lines = ["#!/bin/bash", f"#SBATCH --job-name=tunedeck-{job_id}", f"#SBATCH --output={job_dir / 'job.log'}",
             "#SBATCH --open-mode=append", f"#SBATCH --nodes={opts.nodes}", "#SBATCH --ntasks-per-node=1"]
    if opts.partition:
        lines.append(f"#SBATCH --partition={opts.partition}")
    if opts.time:
        lines.append(f"#SBATCH --time={opts.time}")
    if opts.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={opts.gpus_per_node}")
    if opts.cpus_per_task:
        lines.append(f"#SBATCH --cpus-per-task={opts.cpus_per_task}")
    lines += [f"#SBATCH {arg}" for arg in opts.sbatch_args]
    lines += [
        "set -u",
        f"export PYTHONPATH={q(str(PACKAGE_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}",
        "export PYTHONUNBUFFERED=1",
        f"export TORCHINDUCTOR_CACHE_DIR=${{TORCHINDUCTOR_CACHE_DIR:-{q(str(job_dir / 'cache' / 'torchinductor'))}}}",
        f"export TRITON_CACHE_DIR=${{TRITON_CACHE_DIR:-{q(str(job_dir / 'cache' / 'triton'))}}}",
        'echo "[$(date +%H:%M:%S)] SLURM job $SLURM_JOB_ID on $SLURM_JOB_NODELIST"',
    ]
    engine = ["-m", "engine.cluster.node", "--job-dir", str(job_dir), "--id", str(job_id)]
    if opts.nodes == 1 and per_node == 1:
        lines.append("exec srun --kill-on-bad-exit=1 " + " ".join(q(a) for a in [sys.executable, *engine]))
        return "\n".join(lines) + "\n"
    if not opts.gpus_per_node:
        lines.append("export CUDA_VISIBLE_DEVICES=")  # CPU processes stay on the CPU (see engine.distributed)
        lines.append(f"export OMP_NUM_THREADS=${{OMP_NUM_THREADS:-{max(1, (opts.cpus_per_task or 1) // per_node)}}}")
    lines.append('export TUNEDECK_MASTER=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)')
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(job_dir / "cluster" / "accelerate.yaml"), "--num_machines", str(opts.nodes),
              "--num_processes", str(per_node * opts.nodes), "--main_process_port", str(PORT)]
    node = " ".join(q(a) for a in launch) + ' --machine_rank "$SLURM_NODEID" --main_process_ip "$TUNEDECK_MASTER" ' \
        + " ".join(q(a) for a in engine)
    lines.append("exec srun --kill-on-bad-exit=1 bash -c " + q(f"exec {node}"))
    return "\n".join(lines) + "\n"


def write_accelerate_config(opts: ClusterOptions, run: dict[str, Any], path: Path) -> None:
    """The accelerate config of a multi-process cluster run (machine rank and address come on the command line)."""
    plan = plan_for(run)
    per_node = processes_per_node(opts, run)
    devices = tuple(range(opts.gpus_per_node))
    config = accelerate_config(LaunchPlan(per_node * opts.nodes, devices, plan.strategy, plan.offload), run, PORT)
    config.update(num_machines=opts.nodes, rdzv_backend="static", same_network=False)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=True))
    tmp.replace(path)


def submit(script: Path) -> str:
    """sbatch the script; returns the SLURM job id."""
    done = _run(["sbatch", "--parsable", str(script)])
    if done.returncode != 0:
        raise TunedeckError(f"sbatch refused the job: {(done.stderr or done.stdout).strip() or done.returncode}")
    slurm_id = done.stdout.strip().split(";")[0]
    if not slurm_id.isdigit():
        raise TunedeckError(f"sbatch printed {done.stdout.strip()!r}, not a job id")
    return slurm_id


def state(slurm_id: str) -> str:
    """The job's state (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, NODE_FAIL...), or GONE once SLURM
    has forgotten it."""
    done = _run(["squeue", "-h", "-j", slurm_id, "-o", "%T"])
    if done.returncode == 0 and done.stdout.strip():
        return done.stdout.split()[0]
    done = _run(["scontrol", "show", "job", "-o", slurm_id])
    if done.returncode == 0 and (m := re.search(r"\bJobState=(\w+)", done.stdout)):
        return m.group(1)
    return "GONE"


def cancel(slurm_id: str, signal: str | None = None) -> None:
    """scancel the job, or only send its steps `signal` (TERM: the engine saves a checkpoint and stops)."""
    _run(["scancel", *([f"--signal={signal}"] if signal else []), slurm_id])
