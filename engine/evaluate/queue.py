"""Queueing an `eval` job: resolve the model, the dataset, the base to compare with and the sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.jobqueue import queue_job
from store.artifacts import children, get_artifact, lineage
from store.datasets import find_dataset
from store.db import Store
from store.errors import NotFound, Refused
from store.models import Artifact, Job, Project
from store.payloads import TrainConfig, config_as

HF_KINDS = {"model", "merged", "adapter"}
EVALUABLE = HF_KINDS | {"gguf"}


def _model_of(artifact: Artifact) -> tuple[str, str]:
    """(kind 'hf' or 'gguf', path) of an artifact, checking its files are still there."""
    path = Path(artifact.path)
    if artifact.kind == "gguf":
        if not path.is_file():
            raise NotFound(f"{path}: the GGUF file is gone")
        return "gguf", str(path)
    if not ((path / "config.json").is_file() or (path / "adapter_config.json").is_file()):
        raise NotFound(f"{path}: the model's files are gone")
    return "hf", str(path)


def _has_tokenizer(folder: Path) -> bool:
    from engine.model_folder import TOKENIZER_FILES

    return folder.is_dir() and any((folder / name).is_file() for name in (*TOKENIZER_FILES, "tokenizer_config.json"))


def _local_model(ref: str | None, what: str) -> str | None:
    """A model folder for a path or a cached hub id (never the network); None when there is none."""
    if not ref:
        return None
    from engine.merge.queue import locate_model

    try:
        return str(locate_model(str(ref), what))
    except NotFound:
        return None


def _source_model(session: Any, artifact: Artifact) -> str | None:
    """The folder whose tokenizer renders texts for this artifact: the nearest one in its lineage with
    tokenizer files (itself, the adapter's saved tokenizer, its source model), else its base model's."""
    for a in lineage(session, artifact):
        if a.kind in HF_KINDS and _has_tokenizer(Path(a.path)):
            return a.path
        if a.kind == "gguf" and a.meta.get("source_model") and _has_tokenizer(Path(a.meta["source_model"])):
            return a.meta["source_model"]
    for a in lineage(session, artifact):
        found = _local_model(a.meta.get("base_model"), "base model")
        if found and _has_tokenizer(Path(found)):
            return found
    return None


def _run_of(session: Any, artifact: Artifact) -> Job | None:
    """The training run this artifact comes from (through its lineage), if any."""
    for a in lineage(session, artifact):
        job = session.get(Job, a.job_id) if a.job_id else None
        if job is not None and job.kind == "train":
            return job
    return None


def features_of(session: Any, artifact: Artifact) -> dict[str, Any]:
    """How dataset rows become scored tokens: the training run's own max_length and assistant-only mask when the
    artifact comes from a run (so `eval` reproduces the run's eval loss), else the run config's defaults."""
    from engine.train.config import TrainingSettings

    defaults = TrainingSettings()
    job = _run_of(session, artifact)
    training = (config_as(TrainConfig, job).run.get("training") or {}) if job is not None else {}
    return {"max_length": int(training.get("max_length", defaults.max_length)),
            "assistant_only_loss": bool(training.get("assistant_only_loss", defaults.assistant_only_loss)),
            "from_run": job.id if job is not None else None}


def _label(a: Artifact) -> str:
    return f"artifact {a.id} ({a.name})"


def _original_base(session: Any, artifact: Artifact) -> tuple[str, str, str]:
    """(kind, path, label) of the model training started from: the base of the nearest adapter or fine-tune in
    the lineage (for a GGUF of a merged model: the model before training, not the merged one); without training
    in the lineage, the nearest model it was made from."""
    chain = lineage(session, artifact)
    for i, a in enumerate(chain):
        if a.kind == "adapter" or (a.kind in {"model", "merged"} and a.meta.get("base_model")):
            parent = next((p for p in chain[i + 1:] if p.kind in {"model", "merged"}), None)
            if parent is not None:
                return (*_model_of(parent), _label(parent))
            found = _local_model(a.meta.get("base_model"), f"base model of {_label(a)}")
            if found and Path(found, "config.json").is_file():
                return "hf", found, str(a.meta.get("base_model"))
            break
    for a in chain[1:]:
        if a.kind in {"model", "merged"}:
            return (*_model_of(a), _label(a))
    raise NotFound(f"artifact {artifact.id} has no base model in its lineage; name one: --compare ARTIFACT")


def _base_of(session: Any, artifact: Artifact, compare: str) -> tuple[str, str, str]:
    """(kind, path, label) of the model to compare with: `base` (the original base model) or an artifact."""
    if compare != "base":
        other = get_artifact(session, compare, EVALUABLE)
        return (*_model_of(other), _label(other))
    return _original_base(session, artifact)


def _adapter_base(session: Any, artifact: Artifact) -> str | None:
    """The base model folder an adapter artifact is loaded on."""
    if artifact.kind != "adapter":
        return None
    chain = lineage(session, artifact)
    parent = next((p for p in chain[1:] if p.kind in {"model", "merged"}), None)
    if parent is not None and Path(parent.path, "config.json").is_file():
        return parent.path
    found = _local_model(artifact.meta.get("base_model"), f"base model of {_label(artifact)}")
    if found is None:
        raise NotFound(f"{_label(artifact)}: its base model {artifact.meta.get('base_model')!r} is not on this "
                       "machine")
    return found


def _sweep_entries(session: Any, artifact: Artifact) -> list[dict[str, Any]]:
    reference = artifact
    if artifact.kind != "gguf":
        found = [c for c in children(session, artifact.id) if c.kind == "gguf" and not c.meta.get("quant")]
        if not found:
            raise Refused(f"artifact {artifact.id} has no GGUF yet: convert it first (tunedeck convert "
                          f"{artifact.id} --quant q8_0,q4_k_m)")
        reference = found[-1]
    elif artifact.meta.get("quant"):
        parent = session.get(Artifact, artifact.parent_id) if artifact.parent_id else None
        reference = parent if parent is not None and parent.kind == "gguf" else artifact
    entries = [{"type": reference.meta.get("outtype") or reference.meta.get("quant") or "f16",
                "path": reference.path, "artifact_id": reference.id}]
    entries += [{"type": c.meta["quant"], "path": c.path, "artifact_id": c.id}
                for c in children(session, reference.id) if c.kind == "gguf" and c.meta.get("quant")]
    if len(entries) < 2:
        raise Refused(f"GGUF {reference.id} has no quants to sweep: quantize it first (tunedeck quantize "
                      f"{reference.id} --quant q8_0,q4_k_m)")
    return entries


def queue_eval(store: Store, model: str, *, dataset: str | None = None, split: str = "val",
               compare: str | None = None, sweep: bool = False, tasks: list[str] | None = None,
               start: bool = True) -> int:
    """Queue an evaluation of a model, adapter or GGUF artifact; returns the job id."""
    if split not in {"train", "val"}:
        raise Refused(f"--split {split!r}: expected train or val")
    if not (dataset or compare or sweep or tasks):
        raise Refused("nothing to evaluate: give --dataset, --compare, --sweep or --tasks")
    with store.read() as session:
        artifact = get_artifact(session, model, EVALUABLE)
        kind, path = _model_of(artifact)
        project = session.get(Project, artifact.project_id)
        config: dict[str, Any] = {"artifact_id": artifact.id, "model_kind": kind, "model_path": path,
                                  "adapter_base": _adapter_base(session, artifact),
                                  "tokenizer_dir": _source_model(session, artifact), "split": split,
                                  "features": features_of(session, artifact), "tasks": list(tasks or [])}
        if dataset:
            row = find_dataset(session, dataset, project.name if project else None)
            if row.project_id != artifact.project_id:
                raise Refused(f"dataset {dataset} belongs to another project than artifact {artifact.id}")
            if config["tokenizer_dir"] is None:
                raise NotFound(f"{_label(artifact)}: no tokenizer at hand to render the dataset's chats (none in "
                               "its folder, its lineage or its base model)")
            config.update(dataset_id=row.id, dataset_name=row.name, dataset_path=row.path)
        if compare:
            config["base_kind"], config["base_path"], config["base_label"] = _base_of(session, artifact, compare)
        if sweep:
            config["sweep"] = _sweep_entries(session, artifact)
    return queue_job(store, artifact.project_id, "eval", config, name=f"eval {artifact.name}", start=start)
