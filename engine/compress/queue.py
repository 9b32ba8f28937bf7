"""Queueing a `compress` job (GPTQ or AWQ, W4A16, through llm-compressor); everything checkable without heavy
imports is checked here, so a bad request never reaches the engine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.jobqueue import queue_job
from store.artifacts import get_artifact, lineage
from store.datasets import find_dataset
from store.db import Store
from store.errors import NotFound, Refused
from store.models import Artifact, Dataset, Project
from store.names import check_name

METHODS = ("gptq", "awq")
SCHEMES = ("W4A16",)
GROUP_SIZES = (32, 64, 128)  # what vLLM's W4A16 kernels (Marlin) take besides channelwise
COMPRESSIBLE = {"model", "merged"}
DEFAULT_SAMPLES = 256
DEFAULT_MAX_LENGTH = 512


def _config_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        raise NotFound(f"{path}: the model's files are gone (no config.json)") from None
    except (OSError, ValueError) as exc:
        raise Refused(f"{path / 'config.json'}: not readable JSON ({exc})") from None


def linear_inputs(config: dict[str, Any]) -> dict[str, int]:
    """The input widths of a decoder's linear layers, from its config.json (attention output, MLP down and the
    hidden size every other projection reads); empty when the config does not say."""
    text = config.get("text_config") or config
    hidden = text.get("hidden_size")
    if not isinstance(hidden, int):
        return {}
    widths = {"hidden_size": hidden}
    if isinstance(text.get("intermediate_size"), int):
        widths["intermediate_size"] = text["intermediate_size"]
    heads, head_dim = text.get("num_attention_heads"), text.get("head_dim")
    if isinstance(heads, int) and isinstance(head_dim, int):
        widths["num_attention_heads * head_dim"] = heads * head_dim
    return widths


def check_group_size(path: Path, config: dict[str, Any], group_size: int) -> None:
    """Refuse a group size that does not divide every linear layer's input width (llm-compressor would stop at
    the first such layer, after loading the model)."""
    if group_size not in GROUP_SIZES:
        raise Refused(f"--group-size {group_size}: expected one of {', '.join(map(str, GROUP_SIZES))}")
    widths = linear_inputs(config)
    bad = {name: width for name, width in widths.items() if width % group_size}
    if bad:
        fits = [g for g in GROUP_SIZES if all(w % g == 0 for w in widths.values())]
        hint = f"; --group-size {max(fits)} divides them all" if fits else ""
        raise Refused(f"{path / 'config.json'}: group size {group_size} does not divide "
                      + ", ".join(f"{k} {v}" for k, v in bad.items()) + hint)
    if widths and min(widths.values()) < group_size:
        raise Refused(f"{path / 'config.json'}: group size {group_size} is wider than the narrowest linear input "
                      f"({min(widths.values())})")


def _calibration_dataset(session: Any, artifact: Artifact, ref: str | None) -> Dataset:
    """The dataset named by `ref` (in the artifact's project), else the one its training used (lineage)."""
    project = session.get(Project, artifact.project_id)
    if ref:
        dataset = find_dataset(session, ref, project.name if project else None)
        if dataset.project_id != artifact.project_id:
            raise Refused(f"dataset {ref} belongs to another project than artifact {artifact.id}")
        return dataset
    for a in lineage(session, artifact):
        found = session.get(Dataset, a.meta["dataset_id"]) if a.meta.get("dataset_id") else None
        if found is not None:
            return found
    raise Refused(f"artifact {artifact.id} ({artifact.name}) was not trained on a dataset of this project: name the "
                  "calibration data with --calibration DATASET")


def queue_compress(store: Store, ref: str, *, method: str, scheme: str = "W4A16", group_size: int = 128,
                   calibration: str | None = None, samples: int = DEFAULT_SAMPLES,
                   max_length: int = DEFAULT_MAX_LENGTH, name: str | None = None, start: bool = True) -> int:
    """Queue compressing a model or merged-model artifact with GPTQ or AWQ into compressed-tensors (vLLM's
    format); returns the job id."""
    if method not in METHODS:
        raise Refused(f"--method {method!r}: expected one of {', '.join(METHODS)}")
    if scheme not in SCHEMES:
        raise Refused(f"--scheme {scheme!r}: expected one of {', '.join(SCHEMES)}")
    if not 1 <= samples <= 4096:
        raise Refused(f"--samples {samples}: expected 1 to 4096 calibration rows")
    if not 16 <= max_length <= 32768:
        raise Refused(f"--max-length {max_length}: expected 16 to 32768 tokens")
    with store.read() as session:
        artifact = get_artifact(session, ref)
        if artifact.kind == "adapter":
            raise Refused(f"artifact {artifact.id} is a LoRA adapter: merge it into its base first (tunedeck merge "
                          f"{artifact.id}), then compress the merged model")
        if artifact.kind not in COMPRESSIBLE:
            raise Refused(f"artifact {artifact.id} is a {artifact.kind}; GPTQ/AWQ compress a model or merged model")
        path = Path(artifact.path)
        config = _config_json(path)
        if config.get("quantization_config"):
            method_there = config["quantization_config"].get("quant_method", "?")
            raise Refused(f"{path / 'config.json'}: the model is already quantized ({method_there})")
        check_group_size(path, config, group_size)
        dataset = _calibration_dataset(session, artifact, calibration)
        if not Path(dataset.path, "train.jsonl").is_file():
            raise NotFound(f"{dataset.path}: dataset {dataset.name}'s train split is gone")
        job_config = {"artifact_id": artifact.id, "source_path": str(path), "method": method, "scheme": scheme,
                      "group_size": group_size, "samples": samples, "max_length": max_length,
                      "dataset_id": dataset.id, "dataset_name": dataset.name, "dataset_path": dataset.path,
                      "name": check_name(name, "name") if name else f"{artifact.name}-{method}-{scheme.lower()}"}
    return queue_job(store, artifact.project_id, "compress", job_config, name=f"compress {artifact.name} ({method})",
                     start=start)
