"""Queueing a training run from the CLI or the TUI (light: no torch here).

Everything that can be refused before any work starts is refused here: an incomplete or
invalid config, a missing model or dataset, a dataset whose format does not fit the objective.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from engine.distributed import check_plan, gpu_count
from engine.launch import start_runner
from engine.model_folder import check_model_folder
from engine.train.config import RunConfig, dump_yaml, require_complete
from engine.train.objectives import check_dataset_fit
from engine.train.trackers import check_trackers
from store.datasets import find_dataset
from store.db import Store
from store.errors import NotFound, Refused
from store.home import job_dir
from store.jobs import create_job
from store.projects import get_project

DEMO_MODEL_NAME = "demo-llama"


def gpu_slot(cfg: RunConfig) -> str:
    """The runner slot a run needs: its GPUs (one run per card), else the CPU slot."""
    if cfg.devices:
        return "gpu:" + ",".join(str(d) for d in sorted(cfg.devices))
    if cfg.cpu_processes > 1:
        return "cpu"
    if gpu_count():
        return "gpu:0"
    return "cpu"


def resolve_model(store: Store, model: str, *, need_weights: bool = True,
                  trust_remote_code: bool = False) -> tuple[str, int | None]:
    """(path or hub id to load, model artifact id if it is one of ours). A local folder is checked first
    (engine.model_folder): its config, and unless `need_weights` is False its weights and tokenizer files."""
    from sqlmodel import select

    from store.models import Artifact

    def check(path: Path) -> None:
        check_model_folder(path, weights=need_weights, tokenizer=need_weights, trust_remote_code=trust_remote_code)

    if model.isdigit():
        with store.read() as session:
            artifact = session.get(Artifact, int(model))
        if artifact is None or artifact.kind not in {"model", "merged"}:
            raise NotFound(f"no model artifact with id {model}")
        check(Path(artifact.path))
        return artifact.path, artifact.id
    path = Path(model).expanduser()
    if path.exists():
        check(path)
        with store.read() as session:
            found = session.exec(select(Artifact).where(Artifact.path == str(path.resolve()))).first()
        return str(path.resolve()), found.id if found else None
    from engine.models.hub import is_hub_id, require_hub_model
    from engine.models.queue import model_ref

    if (registered := model_ref(store, model)) is not None:  # `tunedeck model add` names
        check(Path(registered[0]))
        return registered
    if not is_hub_id(model):
        raise NotFound(f"model {model!r}: no such folder, and not a hub id (org/name)")
    require_hub_model(model)  # in the cache, or reachable now: refused in seconds, not after a job's retries
    return model, None


def grpo_inputs(store: Store, project_id: int, cfg: RunConfig) -> dict[str, Any]:
    """A GRPO run's rewards checked before queueing: the reward file parses and defines the named functions
    (checked without running it), the reward model is a reward-model artifact of the project. Returns what the job
    config carries: the resolved file path, the reward model's path and artifact id."""
    from engine.artifacts import REWARD_MODEL
    from engine.train.rewards import check_reward_file
    from store.artifacts import get_artifact

    out: dict[str, Any] = {}
    g = cfg.grpo
    if g.reward_file:
        out["reward_file"] = str(check_reward_file(g.reward_file, list(g.reward_functions)))
    if g.reward_model:
        with store.read() as session:
            try:
                artifact = get_artifact(session, g.reward_model, kinds={REWARD_MODEL})
            except NotFound as exc:
                raise NotFound(f"grpo.reward_model: {exc}; a reward model comes from a run with objective reward "
                               "(`tunedeck artifact list` shows them)") from None
            except Refused as exc:
                raise Refused(f"grpo.reward_model: {exc}") from None
        if artifact.project_id != project_id:
            raise Refused(f"grpo.reward_model: artifact {artifact.id} belongs to another project")
        check_model_folder(Path(artifact.path))
        out |= {"reward_model_path": artifact.path, "reward_model_artifact_id": artifact.id}
    return out


def queue_run(store: Store, project: str, cfg: RunConfig, *, start: bool = True, slot: str | None = None,
              extra: dict[str, Any] | None = None) -> int:
    """Validate a run against the store, queue a `train` job and start its runner; returns the job id.
    `slot` overrides the runner slot (a cluster run goes to `slurm`) and `extra` adds keys to the job's config,
    both in the insert itself, so no local runner can take the job in between."""
    from sqlmodel import select

    from store.models import Artifact

    with store.read() as session:
        project_row = get_project(session, project)
        if project == "demo" and (not cfg.model or not cfg.dataset):
            demo = session.exec(select(Artifact).where(Artifact.project_id == project_row.id,
                                                       Artifact.name == DEMO_MODEL_NAME)).first()
            cfg = cfg.model_copy(update={"model": cfg.model or (demo.path if demo else ""),
                                         "dataset": cfg.dataset or "demo"})
    require_complete(cfg, "run config")
    check_plan(cfg.model_dump(mode="json"))
    check_trackers(list(cfg.report_to))
    model_path, model_artifact = resolve_model(store, cfg.model, trust_remote_code=cfg.trust_remote_code)
    with store.read() as session:
        dataset = find_dataset(session, cfg.dataset, project)
    if dataset.project_id != project_row.id:
        raise Refused(f"dataset {cfg.dataset} belongs to another project")
    check_dataset_fit(cfg.objective, dataset.name, dataset.format)
    rewards = grpo_inputs(store, project_row.id, cfg) if cfg.objective == "grpo" else {}
    config: dict[str, Any] = {
        "run": cfg.model_dump(mode="json"), "run_yaml": dump_yaml(cfg), "project_id": project_row.id,
        "dataset_id": dataset.id, "dataset_path": dataset.path, "dataset_hash": dataset.content_hash,
        "model_path": model_path, "model_artifact_id": model_artifact, **rewards, **(extra or {}),
    }
    slot = slot or gpu_slot(cfg)
    with store.write() as session:
        job_id = create_job(session, project_row.id, "train", config, name=cfg.name, slot=slot).id
    if start:
        start_runner(store.home, slot)
    return job_id


def reset_checkpoints(store: Store, job_id: int) -> None:
    """Forget a job's checkpoints and metrics (retry starts over; resume keeps them)."""
    from sqlalchemy import text

    shutil.rmtree(job_dir(store.home, job_id) / "checkpoints", ignore_errors=True)
    with store.write() as session:
        session.execute(text("DELETE FROM metrics WHERE job_id = :id"), {"id": job_id})
