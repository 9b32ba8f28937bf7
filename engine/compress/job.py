"""The `compress` job: GPTQ or AWQ (W4A16) through llm-compressor, in its own environment, registered as a
`compressed` artifact (a compressed-tensors model folder that vLLM and TGI load) with its perplexity check."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

from engine.jobctx import JobContext

WORKER = Path(__file__).with_name("worker.py")
REPO = Path(__file__).resolve().parents[2]
MAX_EVAL_ROWS = 64
STOP_GRACE_S = 10.0


def _sequences(ctx: JobContext, tokenizer: Any) -> tuple[list[list[int]], list[list[list[int]]], str]:
    """(calibration token ids from the train split, held-out (ids, mask) pairs, what the held-out text is): the
    rows rendered and masked as training renders them (engine.train.data.sft_features)."""
    from engine.evaluate.texts import GENERAL_TEXT, dataset_sequences, read_rows, text_sequences

    cfg = ctx.config
    folder = Path(cfg["dataset_path"])
    train = read_rows(folder, "train", limit=cfg["samples"])
    calibration = [ids for ids, _ in dataset_sequences(tokenizer, train, cfg["max_length"], assistant_only=False)]
    if not calibration:
        raise ValueError(f"{folder / 'train.jsonl'}: no rows to calibrate on")
    try:
        val = read_rows(folder, "val", limit=MAX_EVAL_ROWS)
    except FileNotFoundError:
        val = []
    held_out = dataset_sequences(tokenizer, val, cfg["max_length"]) if val else []
    source = f"{len(held_out)} rows of {cfg['dataset_name']}'s val split (assistant tokens, as training scored them)"
    if not held_out:
        held_out = text_sequences(tokenizer, GENERAL_TEXT)
        source = f"general text ({len(held_out)} passages; {cfg['dataset_name']} has no val rows)"
    return calibration, [[list(ids), list(mask)] for ids, mask in held_out], source


def _stream(proc: subprocess.Popen[str], ctx: JobContext, tail: list[str]) -> None:
    """The worker's output into the job's log; `@progress` lines move the job's progress instead."""
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        if line.startswith("@progress "):
            try:
                ctx.progress(0.1 + 0.85 * float(line.split()[1]), force=True)
            except ValueError:
                pass
            continue
        if line:
            ctx.log(f"  | {line}")
            tail[:] = [*tail[-7:], line]


def _run_worker(ctx: JobContext, python: Path, spec_path: Path) -> None:
    """Run the worker in llm-compressor's environment, following its output; cancel stops it."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("PYTHONPATH", None)  # tunedeck's own packages must not shadow the tool's
    # -P: the worker's own folder stays off sys.path (engine/compress/queue.py would shadow the stdlib's queue)
    proc = subprocess.Popen([str(python), "-P", str(WORKER), str(spec_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=env,
                            cwd=str(ctx.job_dir))
    tail: list[str] = []
    reader = threading.Thread(target=_stream, args=(proc, ctx, tail), daemon=True)
    reader.start()
    try:
        while proc.poll() is None:
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                ctx.check_cancel()
    except BaseException:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    finally:
        reader.join(timeout=5)
    if proc.returncode != 0:
        last = next((ln for ln in reversed(tail) if ln.strip()), "no output")
        raise RuntimeError(f"llm-compressor failed (exit {proc.returncode}): {last}")


def run_compress_job(ctx: JobContext) -> None:
    """Compress a model artifact with GPTQ or AWQ, check the perplexity change, register the result."""
    from transformers import AutoTokenizer

    from engine.artifacts import register_artifact
    from engine.compress.fidelity import check_delta
    from engine.compress.toolenv import compressor_python

    cfg = ctx.config
    source = Path(cfg["source_path"])
    python = compressor_python(ctx.home, ctx.log)
    ctx.progress(0.05, force=True)
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    calibration, held_out, held_out_source = _sequences(ctx, tokenizer)
    work = ctx.job_dir / "compress"
    work.mkdir(parents=True, exist_ok=True)
    (work / "calibration.json").write_text(json.dumps(calibration))
    (work / "held_out.json").write_text(json.dumps(held_out))
    out_dir = ctx.job_dir / "output"
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / cfg["name"]
    result_path = work / "result.json"
    result_path.unlink(missing_ok=True)
    spec = {"source": str(source), "out": str(out), "method": cfg["method"], "scheme": cfg["scheme"],
            "group_size": cfg["group_size"], "max_length": cfg["max_length"], "eval_max_length": cfg["max_length"],
            "calibration": str(work / "calibration.json"), "eval": str(work / "held_out.json"),
            "result": str(result_path), "repo": str(REPO)}
    (work / "spec.json").write_text(json.dumps(spec, indent=1))
    ctx.log(f"{cfg['method']} {cfg['scheme']} of {source} with llm-compressor ({python}); calibration: "
            f"{len(calibration)} rows of {cfg['dataset_name']}'s train split; check: {held_out_source}")
    try:
        _run_worker(ctx, python, work / "spec.json")
    except BaseException:  # nothing half-written stays: cancelled, failed or interrupted, even just after the
        # worker renamed its folder into place (the folder is this job's own: nothing else registered it)
        shutil.rmtree(out.with_name(f".{out.name}.partial"), ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        raise
    figures = json.loads(result_path.read_text())
    check = check_delta(figures["parent"]["perplexity"], figures["compressed"]["perplexity"], cfg["method"])
    check["held_out"] = held_out_source
    check["tokens"] = figures["compressed"]["tokens"]
    change = f"{check['delta']:+.2%}" if check["delta"] is not None else "no scored tokens"
    ctx.log(f"{cfg['method']} {cfg['scheme']}: perplexity {check['perplexity']} vs {check['parent_perplexity']} "
            f"({change}; pass up to +{check['limit']:.1%}, warn up to +{check['warn_limit']:.1%}) "
            f"-> {check['status']}")
    meta = {"format": "compressed-tensors", "method": cfg["method"], "scheme": cfg["scheme"],
            "group_size": cfg["group_size"], "quantization": figures["quantization"],
            "calibration": {"dataset_id": cfg["dataset_id"], "dataset": cfg["dataset_name"],
                            "rows": len(calibration), "max_length": cfg["max_length"]},
            "fidelity": {"status": check["status"], "quant": check}, "source_model": str(source),
            "seconds": figures["seconds"], "versions": figures["versions"]}
    with ctx.store.write() as session:
        artifact = register_artifact(session, cfg["project_id"], "compressed", out, name=cfg["name"],
                                     job_id=ctx.job_id, parent_id=cfg.get("artifact_id"), meta=meta)
        artifact_id = int(artifact.id)  # type: ignore[arg-type]
    ctx.set_result(artifact_id=artifact_id, path=str(out), fidelity=check["status"], delta=check["delta"],
                   limit=check["limit"], warn_limit=check["warn_limit"], perplexity=check["perplexity"],
                   parent_perplexity=check["parent_perplexity"],
                   seconds=round(sum(figures["seconds"].values()), 2))  # the breakdown is in the artifact's meta
    ctx.log(f"wrote {out} (artifact {artifact_id}); serve it with `tunedeck artifact serve {artifact_id}`")
