"""Queueing an `eval` job: resolve the model, the dataset, the base to compare with and the sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.jobqueue import queue_job
from store.artifacts import children, get_artifact, lineage
from store.datasets import find_dataset
from store.db import Store
from store.errors import NotFound, Refused
from store.models import Artifact, Project

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


def _source_model(session: Any, artifact: Artifact) -> str | None:
    """The transformers folder whose tokenizer renders texts for this artifact (itself, or its lineage's)."""
    for a in lineage(session, artifact):
        if a.kind in HF_KINDS and Path(a.path).is_dir():
            return a.path
    return artifact.meta.get("source_model")


def _base_of(session: Any, artifact: Artifact, compare: str) -> tuple[str, str]:
    if compare != "base":
        return _model_of(get_artifact(session, compare, EVALUABLE))
    for a in lineage(session, artifact)[1:]:
        if a.kind in {"model", "merged"}:
            return _model_of(a)
    base = artifact.meta.get("base_model")
    if base and Path(base, "config.json").is_file():
        return "hf", base
    raise NotFound(f"artifact {artifact.id} has no base model in its lineage; name one: --compare ARTIFACT")


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
                                  "tokenizer_dir": _source_model(session, artifact), "split": split,
                                  "tasks": list(tasks or [])}
        if dataset:
            row = find_dataset(session, dataset, project.name if project else None)
            if row.project_id != artifact.project_id:
                raise Refused(f"dataset {dataset} belongs to another project than artifact {artifact.id}")
            config.update(dataset_id=row.id, dataset_name=row.name, dataset_path=row.path)
        if compare:
            config["base_kind"], config["base_path"] = _base_of(session, artifact, compare)
        if sweep:
            config["sweep"] = _sweep_entries(session, artifact)
    return queue_job(store, artifact.project_id, "eval", config, name=f"eval {artifact.name}", start=start)
