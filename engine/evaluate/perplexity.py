"""Perplexity of a transformers model or a GGUF (llama.cpp) over the same token sequences.

Sequences come tokenized (by the source model's tokenizer, which the GGUF fidelity check proves
llama.cpp matches) with a mask of which tokens are scored, so an HF model and its GGUF are measured
on exactly the same predictions. Long sequences are cut into windows of `max_length`.
"""

from __future__ import annotations

import math
import os
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
    return threads or max(1, os.cpu_count() or 1)


def hf_perplexity(model_dir: str | Path, seqs: list[Sequence], max_length: int = 512,
                  progress: Progress | None = None) -> dict[str, Any]:
    """Perplexity of a transformers model folder or adapter (fp32; on the GPU when there is one)."""
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32).to(device).eval()
    nll, count = 0.0, 0
    start = time.perf_counter()
    for i, seq in enumerate(seqs):
        for ids, mask in _windows(seq, max_length):
            x = torch.tensor([ids], device=device)
            with torch.no_grad():
                logits = model(x).logits[0, :-1].double()
            losses = torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="none")
            scored = torch.tensor(mask[1:], device=device, dtype=torch.bool)
            nll += float(losses[scored].sum())
            count += int(scored.sum())
        if progress:
            progress((i + 1) / len(seqs))
    return _summary(nll, count, time.perf_counter() - start, "transformers")


def open_gguf(gguf_path: str | Path, n_ctx: int, threads: int | None = None) -> Any:
    """A llama.cpp model that keeps the logits of every position (CPU)."""
    import llama_cpp

    return llama_cpp.Llama(model_path=str(gguf_path), n_ctx=n_ctx, logits_all=True, verbose=False,
                           n_threads=_threads(threads), n_gpu_layers=0)


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

    llm = open_gguf(gguf_path, max_length + 8, threads)
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

    llm = llama_cpp.Llama(model_path=str(gguf_path), n_ctx=256, verbose=False, n_gpu_layers=0,
                          n_threads=_threads(threads))
    llm.eval(llm.tokenize(b"The weather today is", add_bos=True))
    for _ in range(4):  # warm-up: the first calls pay for allocations
        llm.eval([llm.sample(temp=0.0)])
    start = time.perf_counter()
    for _ in range(n_tokens):
        llm.eval([llm.sample(temp=0.0)])
    return round(n_tokens / (time.perf_counter() - start), 1)
