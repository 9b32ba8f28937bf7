"""The `eval` job: perplexity on a dataset split, a forgetting check against a base, a quant sweep."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from engine.jobctx import JobContext
from store.payloads import EvalConfig, EvalFeatures, SweepEntry

FORGETTING_LIMIT = 0.05  # general-text perplexity may rise 5% over the base before we call it forgetting


def _tokenizer_for(model_dir: str | None) -> Any:
    """The tokenizer saved in `model_dir` (a model or adapter folder), padded as the trainer pads."""
    if not model_dir or not Path(model_dir).is_dir():
        return None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def perplexity_of(ctx: JobContext, kind: str, path: str, seqs: list[Any], label: str,
                  span: tuple[float, float], max_length: int = 512, base_dir: str | None = None) -> dict[str, Any]:
    """Perplexity of an HF model folder or a GGUF, with job progress mapped into `span`."""
    from engine.evaluate.perplexity import gguf_perplexity, hf_perplexity

    lo, hi = span

    def progress(f: float) -> None:
        ctx.progress(lo + (hi - lo) * f)
        ctx.check_cancel()

    ctx.log(f"{label}: perplexity of {Path(path).name} over {len(seqs)} sequences")
    if kind == "gguf":
        result = gguf_perplexity(path, seqs, max_length, progress=progress)
    else:
        result = hf_perplexity(path, seqs, max_length, progress=progress, base_dir=base_dir)
    ctx.log(f"{label}: perplexity {result['perplexity']} over {result['tokens']} tokens ({result['backend']})")
    return result


def _lm_eval_tasks(tasks: list[str]) -> list[dict[str, Any]]:
    """lm-evaluation-harness tasks: run only when the harness and the task data are here, else 'unavailable'."""
    import importlib.util

    if not tasks:
        return []
    if importlib.util.find_spec("lm_eval") is None:
        return [{"task": t, "status": "unavailable",
                 "reason": "lm-evaluation-harness is not installed (pip install lm-eval)"} for t in tasks]
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
    return [{"task": t, "status": "unavailable",
             "reason": "task data is not in the local Hugging Face cache" + (" (offline)" if offline else "")}
            for t in tasks]


def _general(tokenizer: Any, gguf_path: str) -> list[Any]:
    from engine.evaluate.perplexity import gguf_sequences
    from engine.evaluate.texts import GENERAL_TEXT, text_sequences

    return text_sequences(tokenizer, GENERAL_TEXT) if tokenizer is not None else gguf_sequences(gguf_path,
                                                                                                 GENERAL_TEXT)


def run_eval_job(ctx: JobContext) -> None:
    """Evaluate one model: dataset perplexity, optional base comparison, optional quant sweep."""
    from engine.evaluate.texts import dataset_sequences, read_rows
    from store.artifacts import append_eval
    from store.errors import Refused

    cfg = ctx.config_as(EvalConfig)
    cfg.require("model_path")
    kind, path = cfg.model_kind, str(cfg.model_path)
    base_dir = cfg.adapter_base
    tokenizer = _tokenizer_for(cfg.tokenizer_dir)
    result: dict[str, Any] = {"model": path, "model_kind": kind, "at": time.time()}
    if cfg.dataset_path:
        if tokenizer is None:
            raise Refused(f"{path}: no tokenizer of its source model at hand to render the dataset's chats")
        features = cfg.features or EvalFeatures(max_length=2048, assistant_only_loss=True)  # an older row
        split = cfg.split
        rows = read_rows(Path(cfg.dataset_path), split, limit=None)
        seqs = dataset_sequences(tokenizer, rows, features.max_length, features.assistant_only_loss)
        if not seqs:
            raise Refused(f"dataset split {split} has no rows to evaluate on")
        run = f"run {features.from_run}'s" if features.from_run else "the default"
        ctx.log(f"dataset {cfg.dataset_name} ({split}): {len(seqs)} of {len(rows)} rows as {run} features "
                f"(max_length {features.max_length}, "
                f"{'assistant tokens' if features.assistant_only_loss else 'every token'} scored)")
        result["dataset"] = {"id": cfg.dataset_id, "name": cfg.dataset_name, "split": split,
                             "scored": "assistant tokens (as in training)" if features.assistant_only_loss
                             else "every token (as in training)", "rows": len(seqs),
                             **features.model_dump(exclude_unset=True),
                             **perplexity_of(ctx, kind, path, seqs, "dataset", (0.0, 0.4), features.max_length,
                                             base_dir)}
    if cfg.base_path:
        general = _general(tokenizer, path)
        base_label = cfg.base_label or cfg.base_path
        mine = perplexity_of(ctx, kind, path, general, "general text (this model)", (0.4, 0.55), base_dir=base_dir)
        base = perplexity_of(ctx, cfg.base_kind or "hf", cfg.base_path, general,
                             f"general text (base: {base_label})", (0.55, 0.7))
        change = (mine["perplexity"] - base["perplexity"]) / base["perplexity"]
        result["forgetting"] = {"base": cfg.base_path, "base_label": base_label,
                                "perplexity": mine["perplexity"],
                                "base_perplexity": base["perplexity"], "change": round(change, 5),
                                "limit": FORGETTING_LIMIT, "degraded": change > FORGETTING_LIMIT}
        ctx.log(f"general-text perplexity {mine['perplexity']} vs base {base['perplexity']} ({change:+.1%})"
                + (" -> DEGRADED: possible catastrophic forgetting" if change > FORGETTING_LIMIT else ""))
    if cfg.sweep:
        result["sweep"] = _sweep(ctx, cfg.sweep, tokenizer)
    lm_eval = _lm_eval_tasks(cfg.tasks)
    result["lm_eval"] = lm_eval
    for task in lm_eval:
        ctx.log(f"lm-eval {task['task']}: {task['status']} ({task['reason']})")
    if cfg.artifact_id:
        with ctx.store.write() as session:
            append_eval(session, cfg.artifact_id, result)
    ctx.set_result(**{k: v for k, v in result.items() if k != "at"})


def _sweep(ctx: JobContext, entries: list[SweepEntry], tokenizer: Any) -> list[dict[str, Any]]:
    """Size, perplexity, delta to the f16/f32 reference and tokens/s of each GGUF in `entries`."""
    from engine.evaluate.perplexity import gguf_generation_speed

    texts = _general(tokenizer, entries[0].path)
    rows = []
    for i, entry in enumerate(entries):
        ctx.check_cancel()
        span = (0.7 + 0.3 * i / len(entries), 0.7 + 0.3 * (i + 1) / len(entries))
        ppl = perplexity_of(ctx, "gguf", entry.path, texts, f"sweep {entry.type}", span)
        rows.append({"type": entry.type, "artifact_id": entry.artifact_id,
                     "size": Path(entry.path).stat().st_size, "perplexity": ppl["perplexity"],
                     "tokens_per_s": gguf_generation_speed(entry.path)})
    reference = next((r for r in rows if r["type"] in {"f16", "bf16", "f32"}), None)
    for row in rows:
        if reference and reference["perplexity"]:
            row["delta_to_f16"] = round((row["perplexity"] - reference["perplexity"]) / reference["perplexity"], 5)
    ctx.log("quant sweep:\n" + format_sweep(rows))
    return rows


def format_sweep(rows: list[dict[str, Any]]) -> str:
    """The sweep as a text table."""
    lines = [f"{'type':<8} {'size':>10} {'perplexity':>12} {'delta':>8} {'tok/s':>8}"]
    for r in rows:
        delta = r.get("delta_to_f16")
        lines.append(f"{r['type']:<8} {r['size'] / 1e6:>9.2f}M {r['perplexity']:>12.4f} "
                     f"{'-' if delta is None else f'{delta:+.2%}':>8} {r['tokens_per_s']:>8.1f}")
    return "\n".join(lines)
