"""Multi-process runs: launch plans, refusals, the accelerate config, per-card locks, and a real 2-process
DDP run on the CPU (gloo) through the runner, with cancel and resume."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import copy_home, job_row, processes_with, run_cli, wait_job

from engine.distributed import accelerate_config, check_plan, child_command, plan_for
from engine.launch import start_runner
from store.db import Store
from store.errors import Refused
from store.jobs import create_job, get_job
from store.projects import create_project


def _run(**fields: object) -> dict:
    base = {"method": "lora", "devices": [], "strategy": "ddp", "offload": "none", "cpu_processes": 1,
            "training": {"grad_accum": 4, "gradient_checkpointing": False}}
    return {**base, **fields}


@pytest.mark.parametrize(("run", "gpus", "message"), [
    (_run(devices=[0, 1]), 0, "this machine has no NVIDIA GPU"),
    (_run(devices=[0, 3]), 2, "no GPU 3 here; this machine has 2 (indices 0..1)"),
    (_run(devices=[0], cpu_processes=2), 1, "cpu_processes: only for runs without GPUs"),
    (_run(cpu_processes=2, strategy="deepspeed_zero2"), 0, "CPU processes run ddp only"),
    (_run(devices=[0, 1], strategy="ddp", offload="all"), 2, "offload: all needs sharded parameters"),
    (_run(devices=[0, 1], strategy="fsdp", method="qlora"), 2, "4-bit weights cannot be sharded"),
])
def test_plans_a_machine_cannot_run_are_refused(run: dict, gpus: int, message: str) -> None:
    with pytest.raises(Refused, match=re.escape(message)):
        check_plan(run, gpus=gpus)


def test_plans() -> None:
    assert not plan_for(_run()).distributed
    single = check_plan(_run(devices=[1]), gpus=2)
    assert (single.processes, single.devices, single.distributed) == (1, (1,), False)
    two = check_plan(_run(devices=[2, 0]), gpus=4)
    assert (two.processes, two.devices, two.cpu) == (2, (2, 0), False)
    cpu = check_plan(_run(cpu_processes=2), gpus=0)
    assert (cpu.processes, cpu.cpu, cpu.distributed) == (2, True, True)


@pytest.mark.parametrize(("fields", "kind", "extra"), [
    ({"cpu_processes": 2}, "MULTI_GPU", {}),  # the multi-process launcher; the GPUs are hidden (see below)
    ({"devices": [0, 1]}, "MULTI_GPU", {}),
    ({"devices": [0, 1], "strategy": "fsdp", "offload": "all"}, "FSDP",
     {"fsdp_config": {"fsdp_offload_params": True, "fsdp_state_dict_type": "FULL_STATE_DICT"}}),
    ({"devices": [0, 1, 2], "strategy": "deepspeed_zero3", "offload": "optimizer"}, "DEEPSPEED",
     {"deepspeed_config": {"zero_stage": 3, "offload_optimizer_device": "cpu", "offload_param_device": "none",
                           "gradient_accumulation_steps": 4}}),
    ({"devices": [0, 1], "strategy": "deepspeed_zero2"}, "DEEPSPEED",
     {"deepspeed_config": {"zero_stage": 2, "offload_optimizer_device": "none"}}),
])
def test_accelerate_reads_the_generated_config(tmp_path: Path, fields: dict, kind: str, extra: dict) -> None:
    """The file is what accelerate's own config loader accepts, with the distributed type and options asked."""
    import yaml
    from accelerate.commands.config.config_args import ClusterConfig

    run = _run(**fields)
    content = accelerate_config(plan_for(run), run, port=29517)
    path = tmp_path / "accelerate.yaml"
    path.write_text(yaml.safe_dump(content))
    loaded = ClusterConfig.from_yaml_file(str(path))
    assert loaded.distributed_type.value == kind
    assert loaded.num_processes == max(len(fields.get("devices", [])), fields.get("cpu_processes", 1))
    assert loaded.main_process_port == 29517 and not loaded.use_cpu  # use_cpu would start one process
    for section, values in extra.items():
        assert values.items() <= getattr(loaded, section).items(), getattr(loaded, section)


def test_child_command_picks_cards_and_launcher(tmp_path: Path) -> None:
    argv, env = child_command(tmp_path, 7, _run(devices=[3]), tmp_path)
    assert argv[1:3] == ["-m", "engine"] and env["CUDA_VISIBLE_DEVICES"] == "3"
    argv, env = child_command(tmp_path, 7, _run(devices=[2, 5]), tmp_path)
    assert argv[1:3] == ["-m", "accelerate.commands.launch"] and env["CUDA_VISIBLE_DEVICES"] == "2,5"
    assert argv[argv.index("--config_file") + 1] == str(tmp_path / "accelerate.yaml")
    assert argv[-7:] == ["-m", "engine", "--home", str(tmp_path), "job", "--id", "7"]
    _, env = child_command(tmp_path, 7, _run(cpu_processes=2), tmp_path)
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # CPU processes stay on the CPU on a GPU box too


def _wait_store(store: Store, job_id: int, timeout: float = 60) -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        with store.read() as session:
            job = get_job(session, job_id)
        if job.status in {"completed", "failed", "cancelled", "interrupted"}:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} still {job.status}")


def test_jobs_sharing_a_card_take_turns_and_disjoint_cards_run_at_once(store: Store) -> None:
    """Real runners on three GPU slots (the jobs themselves need no GPU): "gpu:0,1" and "gpu:1" share card 1,
    "gpu:2" shares nothing."""
    with store.write() as session:
        pid = create_project(session, "p").id
        ids = {slot: create_job(session, pid, "selftest", {"steps": 10, "seconds": 2.0}, slot=slot).id
               for slot in ("gpu:0,1", "gpu:1", "gpu:2")}
    for slot in ids:
        start_runner(store.home, slot)
    jobs = {slot: _wait_store(store, job_id) for slot, job_id in ids.items()}
    assert all(j.status == "completed" for j in jobs.values()), {s: j.error for s, j in jobs.items()}

    def overlap(a: object, b: object) -> bool:
        return a.started_at < b.finished_at and b.started_at < a.finished_at

    assert not overlap(jobs["gpu:0,1"], jobs["gpu:1"])
    assert overlap(jobs["gpu:2"], jobs["gpu:0,1"]) or overlap(jobs["gpu:2"], jobs["gpu:1"])


def test_devices_on_a_machine_without_gpus_are_refused_before_queueing(home: Path, demo_home_src: Path) -> None:
    copy_home(demo_home_src, home)
    refused = run_cli("run", "new", "demo", "--preset", "smoke", "--set", "devices=0,1", home=home)
    assert refused.returncode == 1 and "devices [0, 1]: this machine has no NVIDIA GPU" in refused.stderr
    assert "Traceback" not in refused.stderr
    with sqlite3.connect(home / "tunedeck.db") as conn:
        assert conn.execute("SELECT count(*) FROM jobs WHERE kind = 'train'").fetchone()[0] == 0


def _show(home: Path, job_id: int) -> dict:
    return json.loads(run_cli("run", "show", str(job_id), "--json", home=home).stdout)


def _job_processes(home: Path, job_id: int) -> list[int]:
    """Live processes running job `job_id` of this home (each rank, and their launcher)."""
    return processes_with("--home", str(home), "job", "--id", str(job_id))


def _wait(home: Path, job_id: int, statuses: set[str], timeout: float = 400) -> dict:
    """`run show` of the job once the store shows one of `statuses` (polled directly; a CLI reader every ~5 s,
    since a reader reaps a job whose processes died)."""
    wait_job(home, job_id, lambda row: row["status"] in statuses, f"never reached {statuses}", timeout)
    return _show(home, job_id)


@pytest.mark.slow
def test_two_process_ddp_on_cpu_through_the_runner_with_cancel_kill_and_resume(home: Path,
                                                                                demo_home_src: Path) -> None:
    copy_home(demo_home_src, home)
    # Past where the cancel (aimed at step 6) and the kill (8 steps after the resume) land, polled from the store
    # and sent in-process (core's cancel, which `run cancel` calls): a one-thread step takes tens of ms.
    steps = 120
    job_id = int(run_cli("run", "new", "demo", "--preset", "smoke", "--set", "cpu_processes=2",
                         "--set", f"max_steps={steps}", "--set", "save_steps=4", "--set", "logging_steps=1",
                         "--set", "eval_steps=0", "--set", "batch=2", "--set", "grad_accum=1",
                         home=home).stdout.strip())
    folder = home / "jobs" / str(job_id)
    while (row := job_row(home, job_id))["step"] < 6:
        assert row["status"] in {"queued", "running"}, (folder / "job.log").read_text()[-3000:]
        time.sleep(0.1)
    from core.jobs import cancel_job

    cancel_job(Store(home), job_id)
    cancelled = _wait(home, job_id, {"cancelled", "failed", "completed", "interrupted"})
    assert cancelled["status"] == "cancelled", cancelled["error"]
    stopped_at = cancelled["step"]
    assert stopped_at < steps - 16, f"the cancel landed at step {stopped_at} of {steps}"
    assert (folder / "checkpoints" / f"checkpoint-{stopped_at}" / "trainer_state.json").is_file()

    assert run_cli("run", "resume", str(job_id), home=home).returncode == 0
    # kill -9 of rank 0 mid-run: the job is interrupted, the other rank does not linger, resume carries on.
    while (running := job_row(home, job_id))["step"] < stopped_at + 8:
        assert running["status"] in {"queued", "running"}, running["error"]
        time.sleep(0.1)
    os.kill(running["pid"], signal.SIGKILL)
    killed = _wait(home, job_id, {"interrupted", "completed", "failed"})
    assert killed["status"] == "interrupted", killed["error"]
    deadline = time.time() + 90
    while _job_processes(home, job_id):
        assert time.time() < deadline, f"processes of the killed job linger: {_job_processes(home, job_id)}"
        time.sleep(0.5)
    assert run_cli("run", "resume", str(job_id), home=home).returncode == 0
    done = _wait(home, job_id, {"completed", "failed", "cancelled", "interrupted"})
    assert done["status"] == "completed", done["error"]
    assert done["step"] == steps and done["result"]["processes"] == 2
    log = (folder / "job.log").read_text()
    assert log.count("(rank 0 of 2 processes)") == 3  # every start ran two processes
    assert f"resuming from checkpoint-{stopped_at}" in log
    assert (folder / "accelerate.yaml").is_file()
    with sqlite3.connect(home / "tunedeck.db") as conn:  # one set of metrics: rank 0 alone writes
        rows = conn.execute("SELECT step, count(*) FROM metrics WHERE job_id = ? AND name = 'loss' "
                            "GROUP BY step ORDER BY step", (job_id,)).fetchall()
    assert [s for s, _ in rows] == list(range(1, steps + 1)) and {c for _, c in rows} == {1}

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    artifact = json.loads(run_cli("artifact", "show", str(done["result"]["artifact_id"]), "--json",
                                  home=home).stdout)
    base = AutoModelForCausalLM.from_pretrained(done["config"]["model_path"])
    tuned = PeftModel.from_pretrained(base, artifact["path"])
    changed = [n for n, p in tuned.named_parameters() if "lora_B" in n and p.abs().sum() > 0]
    assert changed, "the adapter's B matrices are still zero: nothing was trained"
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.isfinite(tuned(input_ids=ids).logits).all()
