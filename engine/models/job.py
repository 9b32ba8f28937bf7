"""The `model-add` job: register a model folder, dequantize a GGUF into one, or download a hub model.

Each ends as an artifact of kind `model` whose meta says where it came from (`source`, `source_type`) and
which exact bytes (`source_sha`: the GGUF's sha256, the hub commit, or the folder's content hash).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path
from typing import Any

from engine.jobctx import JobContext
from store.payloads import ModelAddConfig


def _register(ctx: JobContext, cfg: ModelAddConfig, path: Path, meta: dict[str, Any]) -> int:
    from engine.artifacts import register_artifact

    with ctx.store.write() as session:
        artifact = register_artifact(session, cfg.project, "model", path, name=str(cfg.name), job_id=ctx.job_id,
                                     meta=meta)
        if meta.get("source_sha") is None:  # a folder: its content hash is its identity
            artifact.meta = {**artifact.meta, "source_sha": artifact.sha256}
            session.add(artifact)
        return int(artifact.id)  # type: ignore[arg-type]


def _from_gguf(ctx: JobContext, cfg: ModelAddConfig, gguf: Path) -> tuple[Path, dict[str, Any]]:
    from engine.artifacts import sha256_file
    from engine.gguf.reader import read_metadata
    from engine.gguf.to_hf import gguf_to_transformers
    from store.home import subdir

    info = read_metadata(gguf)
    quant = info.file_type
    ctx.log(f"{gguf.name}: {info.architecture} model in {quant}; dequantizing to a transformers folder")
    ctx.progress(0.05, force=True)
    sha = sha256_file(gguf)
    out = subdir(ctx.home, "models") / str(cfg.name)
    if out.exists():
        shutil.rmtree(out)  # a half-done folder of an earlier try of this job (the name was free when queued)
    with ctx.interruptible():
        gguf_to_transformers(gguf, out, dtype=cfg.dtype)
    note = (f"dequantized from a {quant} GGUF ({gguf.name}): its weights carry {quant}'s rounding error, so it is "
            "close to, not the same as, the original model")
    ctx.log(note)
    return out, {"source": str(gguf), "source_type": "gguf", "source_sha": sha, "dequantized_from": quant,
                 "note": note, "dtype": cfg.dtype}


def _from_hub(ctx: JobContext, cfg: ModelAddConfig) -> tuple[Path, dict[str, Any]]:
    from engine.models.hub import HubModel, download_model

    if cfg.cached_path:
        ctx.log(f"{cfg.source}: already in the Hugging Face cache at {cfg.cached_path}")
        return Path(cfg.cached_path), {"source": cfg.source, "source_type": "hub", "source_sha": cfg.sha}
    cfg.require("hub")
    model = HubModel(**(cfg.hub or {}))
    ctx.log(f"downloading {model.repo_id} at {model.sha[:12]}: {len(model.files)} files, "
            f"{model.size / 1e6:,.1f} MB, into the Hugging Face cache (files an earlier try fetched are kept)")

    lock = threading.Lock()
    got = [0]

    def report(done: int, total: int) -> None:  # called from the download threads; cancel: ctx.interruptible
        with lock:
            got[0] = done
            ctx.progress(done / max(total, model.size, 1))

    with ctx.interruptible():
        folder = download_model(model, report)
    ctx.progress(1.0, force=True)
    ctx.log(f"{model.repo_id}: fetched {got[0]:,} bytes; the snapshot is {folder}")
    return folder, {"source": model.repo_id, "source_type": "hub", "source_sha": model.sha}


def run_model_add_job(ctx: JobContext) -> None:
    """Make the model folder the job's config names and register it as a model artifact."""
    from engine.model_folder import check_model_folder

    cfg = ctx.config_as(ModelAddConfig)
    cfg.require("source", "source_type", "name")
    source = str(cfg.source)
    if cfg.source_type == "gguf":
        folder, meta = _from_gguf(ctx, cfg, Path(source))
    elif cfg.source_type == "hub":
        folder, meta = _from_hub(ctx, cfg)
    else:
        folder, meta = Path(source), {"source": source, "source_type": "folder", "source_sha": None}
    check_model_folder(folder)
    artifact_id = _register(ctx, cfg, folder, meta)
    ctx.set_result(artifact_id=artifact_id, path=str(folder), **{k: v for k, v in meta.items() if k != "source"})
    ctx.log(f"registered {folder} as model artifact {artifact_id} ({cfg.name})")
