"""The `convert` and `quantize` jobs: GGUF files registered as artifacts with their fidelity report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from engine.jobctx import JobContext
from store.payloads import ConvertConfig, QuantizeConfig

MAX_HELD_OUT_ROWS = 16


def _held_out_texts(ctx: JobContext, artifact_id: int | None) -> list[dict[str, Any]]:
    """Validation rows of the dataset the model was trained on (found through the lineage), as chat text."""
    from store.artifacts import lineage
    from store.models import Artifact, Dataset

    if artifact_id is None:
        return []
    with ctx.store.read() as session:
        artifact = session.get(Artifact, artifact_id)
        chain = lineage(session, artifact) if artifact else []
        dataset_id = next((a.meta.get("dataset_id") for a in chain if a.meta.get("dataset_id")), None)
        dataset = session.get(Dataset, dataset_id) if dataset_id else None
    if dataset is None:
        return []
    from engine.evaluate.texts import read_rows

    try:
        rows = read_rows(Path(dataset.path), "val", limit=MAX_HELD_OUT_ROWS)
    except FileNotFoundError:
        return []
    return rows


def _tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def _render(tokenizer: Any, rows: list[dict[str, Any]]) -> list[str]:
    """Rows as the text the model saw (chats through its chat template)."""
    from engine.evaluate.texts import render_row

    return [text for text in (render_row(row, tokenizer) for row in rows) if text]


def _register(ctx: JobContext, project_id: int, kind: str, path: Path, parent_id: int | None,
              meta: dict[str, Any]) -> int:
    from engine.artifacts import register_artifact

    with ctx.store.write() as session:
        artifact = register_artifact(session, project_id, kind, path, name=path.name,
                                     job_id=ctx.job_id, parent_id=parent_id, meta=meta)
        return int(artifact.id)  # type: ignore[arg-type]


def _quantize_one(ctx: JobContext, project_id: int, source: Path, source_id: int | None, qtype: str, out_dir: Path,
                  chunks: list[list[int]] | None, stem: str) -> dict[str, Any]:
    from engine.gguf.fidelity import check_quant
    from engine.gguf.quantize import quantize

    out = out_dir / f"{stem}-{qtype}.gguf"
    ctx.log(f"quantizing {source.name} to {qtype}")
    with ctx.interruptible():
        report = quantize(source, out, qtype)
    if report.get("note"):
        ctx.log(report["note"])
    fidelity: dict[str, Any] = {}
    if chunks:
        quant_check = check_quant(out, source, chunks, qtype)
        fidelity = {"status": quant_check["status"], "quant": quant_check}
        ctx.log(f"{qtype}: perplexity {quant_check['perplexity']} vs {quant_check['parent_perplexity']} "
                f"({quant_check['delta']:+.2%}; pass up to +{quant_check['limit']:.1%}, warn up to "
                f"+{quant_check['warn_limit']:.1%}) -> {quant_check['status']}")
    meta = {"format": "gguf", "quant": qtype, "quantize": report, "fidelity": fidelity,
            "source_gguf": str(source)}
    artifact_id = _register(ctx, project_id, "gguf", out, source_id, meta)
    check = fidelity.get("quant") or {}
    return {"artifact_id": artifact_id, "type": qtype, "path": str(out), "fidelity": fidelity.get("status"),
            "fallback": report.get("fallback", 0), "delta": check.get("delta"), "limit": check.get("limit"),
            "warn_limit": check.get("warn_limit")}


def _adapter_fidelity(ctx: JobContext, tools: Path, adapter: Path, base_dir: Path, lora_gguf: Path,
                      artifact_id: int | None) -> dict:
    """Check a GGUF adapter against the PEFT adapter on an f32 GGUF of the base made for the check."""
    import tempfile

    from engine.gguf.convert import convert_model
    from engine.gguf.fidelity import check_adapter_conversion

    texts = _render(_tokenizer(base_dir), _held_out_texts(ctx, artifact_id))
    with tempfile.TemporaryDirectory(prefix="base-gguf-", dir=ctx.job_dir) as tmp:
        ctx.log("fidelity check: converting the base to a temporary f32 GGUF to apply the adapter to")
        with ctx.interruptible():
            base_gguf = convert_model(tools, base_dir, Path(tmp) / "base-f32.gguf", "f32")
            fidelity = check_adapter_conversion(base_dir, adapter, base_gguf, lora_gguf, texts)
    ctx.log(f"  agreement (base GGUF + GGUF adapter vs base + PEFT adapter): {fidelity['status']} "
            + json.dumps(fidelity["agreement"]))
    return fidelity


def run_convert_job(ctx: JobContext) -> None:
    """Convert a model (or adapter) artifact to GGUF, check fidelity, then make the requested quants."""
    from engine.gguf.convert import convert_adapter, convert_model
    from engine.gguf.fidelity import check_conversion, held_out_ids
    from engine.gguf.tools import ensure_tools

    cfg = ctx.config_as(ConvertConfig)
    cfg.require("source_path")
    project_id = cfg.project
    source = Path(str(cfg.source_path))
    outtype = cfg.outtype
    out_dir = ctx.job_dir / "output"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = cfg.name or source.name
    tools = ensure_tools(ctx.home, ctx.log)
    ctx.progress(0.05, force=True)
    if cfg.source_kind == "adapter":
        cfg.require("base_path")
        out = out_dir / f"{stem}-lora-{outtype}.gguf"
        base_dir = Path(str(cfg.base_path))
        with ctx.interruptible():
            convert_adapter(tools, source, base_dir, out, outtype)
        ctx.progress(0.4, force=True)
        fidelity = _adapter_fidelity(ctx, tools, source, base_dir, out, cfg.artifact_id)
        artifact_id = _register(ctx, project_id, "gguf-lora", out, cfg.artifact_id,
                                {"format": "gguf-lora", "outtype": outtype, "base_model": cfg.base_path,
                                 "fidelity": fidelity})
        ctx.set_result(artifact_id=artifact_id, path=str(out), fidelity=fidelity["status"])
        ctx.log(f"wrote the GGUF adapter {out} (artifact {artifact_id}); use it with llama.cpp's --lora on the "
                "base model's GGUF")
        return
    out = out_dir / f"{stem}-{outtype}.gguf"
    ctx.log(f"converting {source} to {out.name} with llama.cpp's converter ({tools.name})")
    with ctx.interruptible():
        convert_model(tools, source, out, outtype, cfg.pre_tokenizer, model_name=stem)
    ctx.progress(0.4, force=True)
    ctx.check_cancel()
    tokenizer = _tokenizer(source)
    texts = _render(tokenizer, _held_out_texts(ctx, cfg.artifact_id))
    ctx.log(f"fidelity check: tokens, chat template, next-token agreement over {len(texts)} held-out rows "
            "+ general text")
    with ctx.interruptible():
        fidelity = check_conversion(source, out, texts, tokenizer)
    for name in ("tokens", "template", "agreement"):
        ctx.log(f"  {name}: {fidelity[name]['status']} "
                + json.dumps({k: v for k, v in fidelity[name].items() if k not in {'status', 'examples'}})[:300])
    meta = {"format": "gguf", "outtype": outtype, "fidelity": fidelity, "source_model": str(source),
            "pre_tokenizer_forced": cfg.pre_tokenizer}
    gguf_id = _register(ctx, project_id, "gguf", out, cfg.artifact_id, meta)
    ctx.progress(0.6, force=True)
    quants = []
    chunks = None
    if cfg.quants:
        from engine.gguf.fidelity import HELD_OUT

        chunks = held_out_ids(tokenizer, [*HELD_OUT, *texts])
    for i, qtype in enumerate(cfg.quants):
        ctx.check_cancel()
        quants.append(_quantize_one(ctx, project_id, out, gguf_id, qtype, out_dir, chunks, stem))
        ctx.progress(0.6 + 0.4 * (i + 1) / len(cfg.quants), force=True)
    ctx.set_result(artifact_id=gguf_id, path=str(out), fidelity=fidelity["status"], quants=quants)


def run_quantize_job(ctx: JobContext) -> None:
    """Quantize a GGUF artifact (or file) to one or more types, with the perplexity check when the
    tokenizer of its source model is at hand."""
    cfg = ctx.config_as(QuantizeConfig)
    cfg.require("source_path", "quants")
    project_id = cfg.project
    source = Path(str(cfg.source_path))
    out_dir = ctx.job_dir / "output"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = cfg.name or source.stem.removesuffix("-f16").removesuffix("-f32").removesuffix("-bf16")
    chunks = None
    model_dir = cfg.source_model
    if model_dir and Path(model_dir, "config.json").is_file():
        from engine.gguf.fidelity import HELD_OUT, held_out_ids

        chunks = held_out_ids(_tokenizer(Path(model_dir)), HELD_OUT)
    quants = []
    for i, qtype in enumerate(cfg.quants):
        ctx.check_cancel()
        quants.append(_quantize_one(ctx, project_id, source, cfg.artifact_id, qtype, out_dir, chunks, stem))
        ctx.progress((i + 1) / len(cfg.quants), force=True)
    ctx.set_result(quants=quants)
