"""Queueing `convert` and `quantize` jobs; everything checkable without heavy imports is checked here."""

from __future__ import annotations

import json
from pathlib import Path

from engine.gguf.convert import OUTTYPES, ConversionError
from engine.gguf.quantize import QUANT_TYPES
from engine.jobqueue import queue_job
from store.artifacts import get_artifact
from store.db import Store
from store.errors import NotFound, Refused
from store.names import check_name

CONVERTIBLE = {"model", "merged", "adapter"}


def _adapter_base(path: Path, meta: dict) -> str:
    base = meta.get("base_model")
    if not base:
        try:
            base = json.loads((path / "adapter_config.json").read_text()).get("base_model_name_or_path")
        except (OSError, ValueError):
            base = None
    if not base or not Path(base, "config.json").is_file():
        raise NotFound(f"{path}: the adapter's base model folder {base!r} is not on this machine; llama.cpp's "
                       "adapter converter needs its config")
    return str(base)


def queue_convert(store: Store, ref: str, *, outtype: str = "f16", quants: list[str] | None = None,
                  pre_tokenizer: str | None = None, name: str | None = None, start: bool = True) -> int:
    """Queue the conversion of a model, merged model or adapter artifact to GGUF (plus quants)."""
    if outtype not in OUTTYPES:
        raise Refused(f"--outtype {outtype!r}: expected one of {', '.join(OUTTYPES)}")
    unknown = [q for q in quants or [] if q not in QUANT_TYPES]
    if unknown:
        raise Refused(f"unknown quant type {', '.join(unknown)}; expected some of {', '.join(QUANT_TYPES)}")
    with store.read() as session:
        artifact = get_artifact(session, ref, CONVERTIBLE)
    path = Path(artifact.path)
    config = {"artifact_id": artifact.id, "source_path": str(path), "source_kind": artifact.kind,
              "outtype": outtype, "quants": list(quants or []), "pre_tokenizer": pre_tokenizer,
              "name": check_name(name, "name") if name else artifact.name}
    if artifact.kind == "adapter":
        if not (path / "adapter_config.json").is_file():
            raise NotFound(f"{path}: the adapter's files are gone (no adapter_config.json)")
        if quants:
            raise Refused("a LoRA adapter converts to a GGUF adapter; quantize the base model's GGUF instead")
        config["base_path"] = _adapter_base(path, artifact.meta)
    elif not (path / "config.json").is_file():
        raise NotFound(f"{path}: the model's files are gone (no config.json)")
    return queue_job(store, artifact.project_id, "convert", config, name=f"convert {artifact.name}", start=start)


def queue_quantize(store: Store, ref: str, quants: list[str], *, start: bool = True) -> int:
    """Queue quantizing a GGUF artifact to each of `quants`."""
    if not quants:
        raise Refused("name at least one quant type (e.g. q8_0,q4_k_m)")
    unknown = [q for q in quants if q not in QUANT_TYPES]
    if unknown:
        raise Refused(f"unknown quant type {', '.join(unknown)}; expected some of {', '.join(QUANT_TYPES)}")
    with store.read() as session:
        artifact = get_artifact(session, ref, {"gguf"})
    if not Path(artifact.path).is_file():
        raise NotFound(f"{artifact.path}: the GGUF file is gone")
    config = {"artifact_id": artifact.id, "source_path": artifact.path, "quants": quants,
              "source_model": artifact.meta.get("source_model")}
    return queue_job(store, artifact.project_id, "quantize", config, name=f"quantize {artifact.name}", start=start)


__all__ = ["ConversionError", "queue_convert", "queue_quantize"]
