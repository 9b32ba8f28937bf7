"""Perplexity of a transformers model or a GGUF (llama.cpp) over the same token sequences.

Sequences come tokenized (by the source model's tokenizer, which the GGUF fidelity check proves
llama.cpp matches) with a mask of which tokens are scored, so an HF model and its GGUF are measured
on exactly the same predictions. Long sequences are cut into windows of `max_length`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

Progress = Callable[[float], None]
Sequence = tuple[list[int], list[int]]


def _windows(seq: Sequence, size: int) -> list[Sequence]:
    ids, mask = seq
    out = []
    for i in range(0, len(ids), size):
        w_ids, w_mask = ids[i:i + size], mask[i:i + size]
        if len(w_ids) > 1 and any(w_mask[1:]):
            out.append((w_ids, w_mask))
    return out


def _threads(threads: int | None) -> int:
    from engine.cpu_threads import default_threads

    return threads or default_threads(cap=None)


def model_nll(model: Any, seqs: list[Sequence], max_length: int = 512,
              progress: Progress | None = None) -> tuple[float, int]:
    """(summed negative log-likelihood, scored tokens) of a loaded transformers model over `seqs`, in eval mode
    (no dropout), every scored token weighing the same. The training run's final eval loss is this over its
    eval features, so `eval` and the run report one figure."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    nll, count = 0.0, 0
    try:
        for i, seq in enumerate(seqs):
            for ids, mask in _windows(seq, max_length):
                x = torch.tensor([ids], device=device)
                with torch.no_grad():
                    logits = model(input_ids=x).logits[0, :-1].double()
                losses = torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="none")
                scored = torch.tensor(mask[1:], device=device, dtype=torch.bool)
                nll += float(losses[scored].sum())
                count += int(scored.sum())
            if progress:
                progress((i + 1) / len(seqs))
    finally:
        model.train(was_training)
    return nll, count


def load_hf_model(model_dir: str | Path, base_dir: str | Path | None = None) -> Any:
    """A transformers model folder, or a LoRA adapter folder on `base_dir` (else the base its config names),
    in fp32 on the GPU when there is one."""
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if Path(model_dir, "adapter_config.json").is_file() and not Path(model_dir, "config.json").is_file():
        from peft import PeftModel

        if base_dir is None:
            import json

            base_dir = json.loads(Path(model_dir, "adapter_config.json").read_text())["base_model_name_or_path"]
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
        return PeftModel.from_pretrained(base, str(model_dir)).to(device).eval()
    return AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).to(device).eval()


def hf_perplexity(model_dir: str | Path, seqs: list[Sequence], max_length: int = 512,
                  progress: Progress | None = None, base_dir: str | Path | None = None) -> dict[str, Any]:
    """Perplexity of a transformers model folder or adapter (fp32; on the GPU when there is one)."""
    model = load_hf_model(model_dir, base_dir)
    start = time.perf_counter()
    nll, count = model_nll(model, seqs, max_length, progress)
    return _summary(nll, count, time.perf_counter() - start, "transformers")


def open_gguf(gguf_path: str | Path, n_ctx: int, threads: int | None = None) -> Any:
    """A llama.cpp model that keeps the logits of every position (CPU)."""
    import llama_cpp

    n = _threads(threads)  # prompt processing runs on n_threads_batch: llama-cpp-python's default is every core
    return llama_cpp.Llama(model_path=str(gguf_path), n_ctx=n_ctx, logits_all=True, verbose=False,
                           n_threads=n, n_threads_batch=n, n_gpu_layers=0)


def gguf_sequences(gguf_path: str | Path, texts: list[str] | tuple[str, ...]) -> list[Sequence]:
    """Plain texts tokenized by the GGUF's own tokenizer (for a GGUF with no source model at hand)."""
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    bos = [llm.token_bos()] if llm.token_bos() >= 0 else []
    out = []
    for text in texts:
        ids = bos + llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)
        out.append((ids, [0] * len(bos) + [1] * (len(ids) - len(bos))))
    return out


def gguf_perplexity(gguf_path: str | Path, seqs: list[Sequence], max_length: int = 512,
                    progress: Progress | None = None, threads: int | None = None) -> dict[str, Any]:
    """Perplexity of a GGUF through llama.cpp over the given token sequences."""
    import numpy as np

    longest = max((len(ids) for ids, _ in seqs), default=1)
    llm = open_gguf(gguf_path, min(max_length, longest) + 8, threads)
    nll, count = 0.0, 0
    start = time.perf_counter()
    for i, seq in enumerate(seqs):
        for ids, mask in _windows(seq, max_length):
            llm.reset()
            llm.eval(ids)
            logits = np.array(llm.scores[: len(ids) - 1], dtype=np.float64)
            logits -= logits.max(-1, keepdims=True)
            logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
            picked = logp[np.arange(len(ids) - 1), ids[1:]]
            scored = np.array(mask[1:], dtype=bool)
            nll -= float(picked[scored].sum())
            count += int(scored.sum())
        if progress:
            progress((i + 1) / len(seqs))
    return _summary(nll, count, time.perf_counter() - start, "llama.cpp")


def _summary(nll: float, count: int, seconds: float, backend: str) -> dict[str, Any]:
    if count == 0:
        return {"perplexity": None, "tokens": 0, "backend": backend, "seconds": round(seconds, 3)}
    mean = nll / count
    return {"perplexity": round(math.exp(mean), 5) if mean < 50 else float("inf"), "loss": round(mean, 6),
            "tokens": count, "backend": backend, "seconds": round(seconds, 3)}


def gguf_generation_speed(gguf_path: str | Path, n_tokens: int = 32, threads: int | None = None) -> float:
    """Generation tokens/s of a GGUF on a fixed prompt (greedy, EOS ignored so every run makes n_tokens)."""
    import llama_cpp

    n = _threads(threads)
    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=256, verbose=False, n_gpu_layers=0,
                          n_threads=n, n_threads_batch=n)
    llm.eval(llm.tokenize(b"The weather today is", add_bos=True))
    for _ in range(4):  # warm-up: the first calls pay for allocations
        llm.eval([llm.sample(temp=0.0)])
    start = time.perf_counter()
    for _ in range(n_tokens):
        llm.eval([llm.sample(temp=0.0)])
    return round(n_tokens / (time.perf_counter() - start), 1)


def per_token_eval_loss(trainer: Any) -> None:
    """Make an SFT Trainer report `eval_loss` as the mean over every scored eval token (the measure `tunedeck
    eval` uses), at every evaluation: the baseline, the periodic ones and the final one. The Trainer's own figure
    is the mean of per-batch means, which weighs the tokens of short examples more (a demo run: 15.01 against
    21.01 per token). Each eval batch's mean loss is weighed by its scored tokens and the loop's figure replaced
    before it is logged. Several processes keep the Trainer's figure (each rank sees only its share)."""
    if trainer.args.world_size != 1:
        return
    compute_loss, evaluation_loop = trainer.compute_loss, trainer.evaluation_loop
    totals = [0.0, 0]

    def counted_loss(model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        out = compute_loss(model, inputs, *args, **kwargs)
        if not model.training and inputs.get("labels") is not None:
            loss = out[0] if isinstance(out, tuple) else out
            labels = inputs.get("shift_labels")
            labels = inputs["labels"][..., 1:] if labels is None else labels
            items = kwargs.get("num_items_in_batch")
            count = int(items) if items is not None else int((labels != -100).sum())
            totals[0] += float(loss.detach().float().mean()) * count
            totals[1] += count
        return out

    def per_token_loop(*args: Any, **kwargs: Any) -> Any:
        totals[:] = [0.0, 0]
        output = evaluation_loop(*args, **kwargs)
        prefix = kwargs.get("metric_key_prefix", "eval")
        if totals[1] and f"{prefix}_loss" in output.metrics:
            output.metrics[f"{prefix}_loss"] = totals[0] / totals[1]
        return output

    trainer.compute_loss = counted_loss
    trainer.evaluation_loop = per_token_loop
