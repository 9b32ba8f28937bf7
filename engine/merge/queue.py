"""Queueing `merge` and `merge-models` jobs. Light (no torch): everything that can be refused is refused here,
before a job row exists: wrong artifact kinds, missing folders, incompatible models, bad weights or density."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.jobqueue import queue_job
from engine.merge.compat import (
    ADAPTER_CONFIG,
    check_adapter_fits,
    check_adapters_combinable,
    check_models,
    read_adapter_config,
    read_config,
    refuse_quantized,
)
from engine.merge.methods import DENSITY_METHODS, DTYPES, METHODS
from engine.model_folder import check_model_folder
from store.artifacts import get_artifact
from store.db import Store
from store.errors import NotFound, Refused
from store.names import check_name
from store.projects import get_project

DEFAULT_DENSITY = 0.5
MODEL_KINDS = {"model", "merged"}


@dataclass
class Source:
    """A model or adapter to merge: where it is, what it is, and how to name it in messages."""

    label: str
    path: str
    kind: str  # "model" or "adapter"
    artifact_id: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def locate_model(ref: str, what: str) -> Path:
    """A model folder from a path or, for a hub id (org/name), the Hugging Face cache (never the network)."""
    path = Path(ref).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists():
        raise NotFound(f"{what} {ref} is not a folder")
    if ref.startswith((".", "/", "~")) or ref.count("/") != 1:
        raise NotFound(f"{what} {ref} is missing (moved or deleted?)")
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(ref, "config.json")
    if isinstance(cached, str):
        return Path(cached).parent
    raise NotFound(f"{what} {ref} is not a folder and not in the Hugging Face cache")


def _from_artifact(artifact: Any) -> Source:
    label = f"artifact {artifact.id} ({artifact.name})" if artifact.name else f"artifact {artifact.id}"
    if not Path(artifact.path).is_dir():
        raise NotFound(f"{label}: its folder {artifact.path} is missing (moved or deleted?)")
    kind = "adapter" if artifact.kind == "adapter" else "model"
    return Source(label, str(Path(artifact.path).resolve()), kind, artifact.id, dict(artifact.meta or {}))


def resolve_source(session: Any, ref: str) -> Source:
    """An artifact (id or unique name) of kind model, merged or adapter, or a model/adapter folder path."""
    from sqlmodel import select

    from store.models import Artifact

    kinds = MODEL_KINDS | {"adapter"}
    if str(ref).isdigit():
        return _from_artifact(get_artifact(session, ref, kinds=kinds))
    path = Path(ref).expanduser()
    if path.exists():
        if not path.is_dir():
            raise NotFound(f"{ref}: not a folder")
        if (path / ADAPTER_CONFIG).is_file():
            kind = "adapter"
        elif (path / "config.json").is_file():
            kind = "model"
            check_model_folder(path, tokenizer=False)  # readable config, whole weights: refused now, not mid-job
        else:
            raise NotFound(f"{ref}: not a model folder (no config.json) nor an adapter folder (no {ADAPTER_CONFIG})")
        resolved = str(path.resolve())
        found = session.exec(select(Artifact).where(Artifact.path == resolved)).first()
        return Source(resolved, resolved, kind, found.id if found else None, dict(found.meta) if found else {})
    try:
        return _from_artifact(get_artifact(session, ref, kinds=kinds))
    except NotFound:
        raise NotFound(f"{ref}: no such artifact (id or name) nor model folder") from None


def adapter_base(adapter: Source) -> Path:
    """The base model folder an adapter was trained on (artifact metadata, else adapter_config.json)."""
    ref = adapter.meta.get("base_model") or read_adapter_config(Path(adapter.path)).get("base_model_name_or_path")
    if not ref:
        raise Refused(f"{adapter.label} does not record its base model (no base_model in its metadata or "
                      f"{ADAPTER_CONFIG})")
    return locate_model(str(ref), f"base model of {adapter.label}:")


def queue_merge(store: Store, artifact_ref: str, *, dtype: str = "fp32", name: str | None = None,
                start: bool = True) -> int:
    """Check and queue a `merge` job folding adapter `artifact_ref` into its base; returns the job id."""
    if dtype not in DTYPES:
        raise Refused(f"unknown dtype {dtype!r} (one of {', '.join(DTYPES)})")
    name = check_name(name, "name") if name else None
    with store.read() as session:
        try:
            artifact = get_artifact(session, artifact_ref, kinds={"adapter"})
        except Refused as exc:
            raise Refused(f"{exc}: `tunedeck merge` folds an adapter into its base (combine full models with "
                          "`tunedeck merge-models`)") from None
        adapter = _from_artifact(artifact)
    base = adapter_base(adapter)
    check_adapter_fits(Path(adapter.path), base, adapter.label, f"its base {base}")
    method = adapter.meta.get("method") or "lora"
    label = artifact.name or f"adapter{artifact.id}"
    config = {"artifact_id": artifact.id, "adapter_path": adapter.path, "base_path": str(base), "dtype": dtype,
              "method": method, "name": name or f"{label}-merged"}
    return queue_job(store, artifact.project_id, "merge", config, name=config["name"], start=start)


def resolve_weights(method: str, weights: list[float] | None, count: int) -> list[float]:
    """The weights to use: [t] for slerp (default 0.5), one positive weight per input otherwise (default 1 each)."""
    if method == "slerp":
        t = [0.5] if weights is None else list(weights)
        if len(t) != 1 or not 0 <= t[0] <= 1:
            raise Refused("slerp takes one weight: the interpolation factor t in [0, 1] (0 gives the first input, "
                          f"1 the second); got {t}")
        return [float(t[0])]
    if weights is None:
        return [1.0] * count
    if len(weights) != count:
        raise Refused(f"{len(weights)} weights for {count} inputs: give one weight per input")
    if not all(math.isfinite(w) and w > 0 for w in weights):
        raise Refused(f"weights must be positive numbers; got {list(weights)}")
    return [float(w) for w in weights]


def resolve_density(method: str, density: float | None) -> float | None:
    """The density for ties/dare methods (default 0.5); refused for methods that have none."""
    if method not in DENSITY_METHODS:
        if density is not None:
            raise Refused(f"density applies to {', '.join(DENSITY_METHODS)}, not {method}")
        return None
    density = DEFAULT_DENSITY if density is None else float(density)
    if not 0 < density <= 1:
        raise Refused(f"density must be in (0, 1] (the fraction of each task vector kept); got {density}")
    return density


def check_sources(base: Source, inputs: list[Source]) -> list[str]:
    """Refuse inputs that cannot be merged onto `base`; returns warnings."""
    if base.kind == "adapter":
        raise Refused(f"the base must be a full model; {base.label} is an adapter")
    kinds = {s.kind for s in inputs}
    if len(kinds) > 1:
        adapters = ", ".join(s.label for s in inputs if s.kind == "adapter")
        raise Refused(f"inputs mix adapters ({adapters}) and full models: merge the adapters into their base with "
                      "`tunedeck merge` first")
    warnings: list[str] = []
    if kinds == {"model"}:
        for source in inputs:
            warnings += check_models(Path(base.path), Path(source.path), base.label, source.label)
        return list(dict.fromkeys(warnings))
    refuse_quantized(read_config(Path(base.path)), base.label)
    check_adapters_combinable([(Path(s.path), s.label) for s in inputs])
    for source in inputs:
        trained_on = adapter_base(source)
        if trained_on != Path(base.path).resolve():
            raise Refused(f"cannot merge {source.label} onto {base.label}: the adapter was trained on {trained_on}")
        check_adapter_fits(Path(source.path), Path(base.path), source.label, base.label)
    return warnings


def queue_merge_models(
    store: Store, project: str, base: str, inputs: list[str], method: str, weights: list[float] | None = None,
    density: float | None = None, name: str | None = None, *, seed: int = 0, start: bool = True,
    on_warning: Callable[[str], object] | None = None,
) -> int:
    """Check and queue a `merge-models` job combining `inputs` (all full models, or all LoRA adapters of
    `base`) with `method`; returns the job id."""
    if method not in METHODS:
        raise Refused(f"unknown merge method {method!r} (one of {', '.join(METHODS)})")
    name = check_name(name, "name") if name else None
    if len(inputs) < 2:
        raise Refused(f"merging needs at least two inputs besides the base; got {len(inputs)}")
    if method == "slerp" and len(inputs) != 2:
        raise Refused(f"slerp interpolates between exactly two inputs; got {len(inputs)}")
    weights = resolve_weights(method, weights, len(inputs))
    density = resolve_density(method, density)
    with store.read() as session:
        project_row = get_project(session, project)
        base_source = resolve_source(session, base)
        sources = [resolve_source(session, ref) for ref in inputs]
    for warning in check_sources(base_source, sources):
        if on_warning:
            on_warning(warning)
    def plain(source: Source) -> dict[str, Any]:  # the job needs where and what, not the artifact's metadata
        return {k: v for k, v in asdict(source).items() if k != "meta"}

    config = {"method": method, "base": plain(base_source), "inputs": [plain(s) for s in sources],
              "input_kind": sources[0].kind, "weights": weights, "density": density, "seed": int(seed),
              "name": name or f"{method}-merge"}
    return queue_job(store, project_row.id, "merge-models", config, name=config["name"], start=start)
