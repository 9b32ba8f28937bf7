"""Multi-process training: which runs need `accelerate launch`, the accelerate config they get, and the
command and environment the runner starts them with. Light: no torch here (the runner and the CLI use it).

A run with several `devices` (GPU indices) or several `cpu_processes` is launched as
`python -m accelerate.commands.launch --config_file jobs/<id>/accelerate.yaml -m engine job --id ID`; every
process runs the same job, and only rank 0 writes to the store (see `engine.jobrun`).
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from store.errors import Refused

NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


@dataclass(frozen=True)
class LaunchPlan:
    """How a train job's processes are started."""

    processes: int
    devices: tuple[int, ...]  # GPU indices (physical), () on the CPU
    strategy: str
    offload: str

    @property
    def distributed(self) -> bool:
        return self.processes > 1

    @property
    def cpu(self) -> bool:
        return not self.devices


def gpu_count() -> int:
    """NVIDIA GPUs the driver lists (0 without a driver); read from /proc, so no NVML or torch is loaded."""
    try:
        return sum(1 for _ in NVIDIA_GPUS.iterdir())
    except OSError:
        return 0


def plan_for(run: dict[str, Any]) -> LaunchPlan:
    """The launch plan of a run config (as stored in the job: `RunConfig.model_dump()`)."""
    devices = tuple(int(d) for d in run.get("devices") or ())
    processes = len(devices) if devices else int(run.get("cpu_processes") or 1)
    return LaunchPlan(processes=max(1, processes), devices=devices, strategy=str(run.get("strategy") or "ddp"),
                      offload=str(run.get("offload") or "none"))


def check_plan(run: dict[str, Any], gpus: int | None = None) -> LaunchPlan:
    """Refuse, before queueing, a plan this machine or these libraries cannot run; returns the plan."""
    plan = plan_for(run)
    gpus = gpu_count() if gpus is None else gpus
    if plan.devices:
        if int(run.get("cpu_processes") or 1) > 1:
            raise Refused("cpu_processes: only for runs without GPUs; leave it at 1 when devices are set")
        if gpus == 0:
            raise Refused(f"devices {list(plan.devices)}: this machine has no NVIDIA GPU (leave devices empty "
                          "to train on the CPU)")
        missing = [d for d in plan.devices if d >= gpus]
        if missing:
            raise Refused(f"devices: no GPU {missing[0]} here; this machine has {gpus} "
                          f"(indices 0..{gpus - 1})")
    if not plan.distributed:
        return plan
    if plan.cpu and plan.strategy != "ddp":
        raise Refused(f"strategy {plan.strategy}: CPU processes run ddp only (sharding is for GPUs)")
    if plan.strategy.startswith("deepspeed"):
        if importlib.util.find_spec("deepspeed") is None:
            raise Refused(f"strategy {plan.strategy} needs the deepspeed package: pip install deepspeed "
                          "(or use ddp or fsdp)")
    if plan.offload == "all" and plan.strategy in {"ddp", "deepspeed_zero2"}:
        raise Refused(f"offload: all needs sharded parameters (fsdp or deepspeed_zero3), not {plan.strategy}")
    if run.get("method") == "qlora" and plan.strategy != "ddp":
        raise Refused(f"method qlora with strategy {plan.strategy}: 4-bit weights cannot be sharded here; "
                      "use strategy ddp (each GPU holds the 4-bit model)")
    return plan


def accelerate_config(plan: LaunchPlan, run: dict[str, Any], port: int) -> dict[str, Any]:
    """The accelerate config file's content for a distributed plan."""
    gradient_checkpointing = bool((run.get("training") or {}).get("gradient_checkpointing"))
    config: dict[str, Any] = {
        "compute_environment": "LOCAL_MACHINE", "num_machines": 1, "machine_rank": 0,
        "num_processes": plan.processes, "main_process_port": port, "rdzv_backend": "static",
        "same_network": True, "use_cpu": False, "mixed_precision": "no",  # the Trainer sets the precision
        "debug": False, "downcast_bf16": "no",
    }
    if plan.cpu or plan.strategy == "ddp":
        # CPU too: accelerate's CPU mode starts several processes only through mpirun; its multi-process
        # launcher (torchrun) with the GPUs hidden gives each process the CPU, and accelerate picks gloo.
        config.update(distributed_type="MULTI_GPU", gpu_ids="all")  # CUDA_VISIBLE_DEVICES picks the cards
    elif plan.strategy == "fsdp":
        config.update(distributed_type="FSDP", gpu_ids="all", fsdp_config={
            "fsdp_version": 2, "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_offload_params": plan.offload != "none", "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_state_dict_type": "FULL_STATE_DICT", "fsdp_reshard_after_forward": True,
            "fsdp_activation_checkpointing": gradient_checkpointing,
        })
    else:
        zero3 = plan.strategy == "deepspeed_zero3"
        training = run.get("training") or {}
        config.update(distributed_type="DEEPSPEED", gpu_ids="all", deepspeed_config={
            "zero_stage": 3 if zero3 else 2, "zero3_init_flag": zero3, "zero3_save_16bit_model": zero3,
            "offload_optimizer_device": "cpu" if plan.offload != "none" else "none",
            "offload_param_device": "cpu" if plan.offload == "all" else "none",
            "gradient_accumulation_steps": int(training.get("grad_accum") or 1), "gradient_clipping": 1.0,
        })
    return config


def free_port() -> int:
    """A TCP port nobody listens on now, for the processes' rendezvous (two jobs may run at once)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_command(home: Path, job_id: int, run: dict[str, Any] | None,
                  folder: Path) -> tuple[list[str], dict[str, str]]:
    """argv and environment for the process(es) of job `job_id`: a plain engine child, or `accelerate launch`
    with a config written to `folder/accelerate.yaml` when the run is distributed."""
    env = dict(os.environ)
    engine = ["-m", "engine", "--home", str(home), "job", "--id", str(job_id)]
    if run is None:
        return [sys.executable, *engine], env
    plan = plan_for(run)
    if plan.devices:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(d) for d in plan.devices)
    if not plan.distributed:
        return [sys.executable, *engine], env
    if plan.cpu:
        env["CUDA_VISIBLE_DEVICES"] = ""  # CPU processes stay on the CPU even on a GPU box
    path = folder / "accelerate.yaml"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(accelerate_config(plan, run, free_port()), sort_keys=True))
    tmp.replace(path)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // plan.processes)))
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(path), *engine], env


def rank() -> int:
    """This process's rank in a distributed job (0 when not distributed)."""
    return int(os.environ.get("RANK", "0") or 0)


def world_size() -> int:
    """How many processes run this job (1 when not distributed)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)
