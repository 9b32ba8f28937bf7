"""Proof that a GGUF is the model it came from: tokens, chat template, next-token agreement, quant perplexity.

Each check returns a dict with a `status` of pass, warn or fail and the figures behind it; the
worst status is the artifact's badge.
"""

from __future__ import annotations

import ctypes
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.cpu_threads import default_threads

if TYPE_CHECKING:
    from engine.gguf.reader import GGUFInfo

PROBES = (
    "Hello, world! How are you today?",
    "naïve café \u2013 déjà vu; Zürich, Ελληνικά, русский, 日本語, 中文, 🚀🦙",
    "def add(a, b):\n    return a + b  # sum\n\tif x != y: print(f'{x!r}')",
    "  leading spaces, trailing spaces   \n\n\ttabs\tand\r\nCRLF  ",
    "1234567890 3.14159 -42 1e-5 0x1F",
    "<|im_start|>user\nreverse: red green<|im_end|>\n<|im_start|>assistant\n",
    "</s><s> [INST] special-looking text [/INST]",
)
HELD_OUT = (
    "The committee met on Tuesday to review the budget for the coming year. After a long discussion, the "
    "members agreed to fund the new library wing and to postpone the repairs to the old bridge until spring.",
    "To make bread, mix flour, water, salt and yeast, knead the dough for ten minutes, let it rise for an hour, "
    "shape it, and bake it in a hot oven until the crust is brown and the loaf sounds hollow.",
    "def fibonacci(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "reverse: apple river stone\nstone river apple\nreverse: blue cat\ncat blue\n",
)
CONVERSATION = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Reverse these words: red green blue"},
    {"role": "assistant", "content": "blue green red"},
    {"role": "user", "content": "Now: one two"},
]
TOP1_GOAL = 0.99
# Perplexity increase over the f16 parent per quant type, from llama.cpp's published table (tools/perplexity/
# README.md, "LLaMA 3 8b Scoreboard", no imatrix: PPL / 6.233160 (f16) - 1; the same figures as tools/quantize's
# "+x ppl @ Llama-3-8B").
LLAMA_CPP_PPL_INCREASE = {"q8_0": 0.00018, "q6_k": 0.00324, "q5_k_m": 0.0089, "q4_k_m": 0.02791,
                          "q4_0": 0.07492, "q3_k_m": 0.10514, "q2_k": 0.56447}
# A small model loses more to quantization than an 8B one, and the check scores a few hundred tokens, not
# Wikitext: the published increase is scaled, with a floor for the sampling noise. Measured on SmolLM2-135M over
# the check's texts: q8_0 +1.03%, q4_k_m +3.51%, both within these limits.
SMALL_MODEL_FACTOR = 3.0
NOISE_FLOOR = 0.02
WARN_FACTOR = 2.0  # up to this multiple of the pass limit warns; beyond fails


def ppl_delta_limits(qtype: str) -> tuple[float, float]:
    """(pass, warn) limits on a quant's perplexity increase over its parent, from llama.cpp's table."""
    published = LLAMA_CPP_PPL_INCREASE.get(qtype, 0.10)
    ok = round(max(NOISE_FLOOR, SMALL_MODEL_FACTOR * published), 4)
    return ok, round(WARN_FACTOR * ok, 4)


PPL_DELTA_LIMITS = {q: ppl_delta_limits(q) for q in LLAMA_CPP_PPL_INCREASE}
RANK = {"pass": 0, "warn": 1, "fail": 2}


def worst(statuses: list[str]) -> str:
    """The worst of pass/warn/fail."""
    return max(statuses, key=lambda s: RANK[s]) if statuses else "pass"


def load_llama(gguf_path: Path, *, vocab_only: bool = False, logits_all: bool = False, n_ctx: int = 512) -> Any:
    """A llama.cpp model on the CPU, quiet."""
    import llama_cpp

    threads = default_threads(cap=None)  # for n_threads_batch too: llama-cpp-python's default is every core
    return llama_cpp.Llama(model_path=str(gguf_path), vocab_only=vocab_only, logits_all=logits_all, n_ctx=n_ctx,
                           n_threads=threads, n_threads_batch=threads, n_gpu_layers=0, verbose=False)


def check_tokens(tokenizer: Any, llm: Any) -> dict[str, Any]:
    """(a) The HF tokenizer and the GGUF vocabulary give the same ids for each probe string."""
    mismatches = []
    for text in PROBES:
        hf = list(tokenizer.encode(text, add_special_tokens=False))
        gg = list(llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))
        if hf != gg:
            mismatches.append({"text": text, "hf": hf[:40], "gguf": gg[:40]})
    return {"status": "pass" if not mismatches else "fail", "probes": len(PROBES),
            "mismatched": len(mismatches), "examples": mismatches[:3]}


def _llama_cpp_render(template: str, messages: list[dict[str, str]]) -> str | None:
    """The conversation rendered by llama.cpp's built-in template engine, or None if it does not know it."""
    import llama_cpp

    array = (llama_cpp.llama_chat_message * len(messages))(
        *[llama_cpp.llama_chat_message(m["role"].encode(), m["content"].encode()) for m in messages])
    size = 8192
    for _ in range(2):
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_chat_apply_template(template.encode(), array, len(messages), True, buf, size)
        if n < 0:
            return None
        if n <= size:
            return buf.raw[:n].decode("utf-8", "replace")
        size = n + 1
    return None


def check_template(tokenizer: Any, meta: GGUFInfo) -> dict[str, Any]:
    """(b) Chat template and BOS/EOS are in the GGUF (`meta`, from the GGUF reader), and the GGUF's template
    renders a conversation as the HF template does (through the renderer the chat pane uses)."""
    problems: list[str] = []
    template = meta.chat_template
    hf_template = getattr(tokenizer, "chat_template", None)
    if meta.eos_token_id is None:
        problems.append("no EOS token id in the GGUF")
    if meta.bos_token_id is None and tokenizer.bos_token_id is not None:
        problems.append("the tokenizer has a BOS token but the GGUF has none")
    elif tokenizer.bos_token_id is not None and meta.bos_token_id != tokenizer.bos_token_id:
        problems.append(f"BOS id {meta.bos_token_id} in the GGUF, {tokenizer.bos_token_id} in the tokenizer")
    if tokenizer.eos_token_id is not None and meta.eos_token_id not in (None, tokenizer.eos_token_id):
        problems.append(f"EOS id {meta.eos_token_id} in the GGUF, {tokenizer.eos_token_id} in the tokenizer")
    result: dict[str, Any] = {"template_in_gguf": bool(template), "template_in_model": bool(hf_template)}
    if not template:
        if hf_template:
            problems.append("the model has a chat template but the GGUF lost it")
        result.update(status="fail" if hf_template else "warn",
                      problems=problems or ["neither the model nor the GGUF has a chat template"])
        return result
    if hf_template and template != hf_template:
        problems.append("the GGUF's chat template text differs from the model's")
    from engine.gguf.template import render_prompt

    bos, eos = tokenizer.bos_token or "", tokenizer.eos_token or ""
    result["renderer"] = "jinja (llama-server --jinja, llama-cpp-python)"
    result["conversations"] = []
    for label, chat in (("with a system message", CONVERSATION), ("without one", CONVERSATION[1:])):
        hf_text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        rendered = render_prompt(template, chat, bos, eos)
        builtin = _llama_cpp_render(template, chat)
        entry = {"conversation": label, "same_text": rendered == hf_text,
                 "builtin_same_text": None if builtin is None else builtin == hf_text}
        if not entry["same_text"]:
            problems.append(f"a conversation {label} renders differently")
            entry["hf"], entry["gguf"] = hf_text[:300], rendered[:300]
        result["conversations"].append(entry)
    result["same_text"] = all(c["same_text"] for c in result["conversations"])
    if any(c["builtin_same_text"] is False for c in result["conversations"]):
        result["note"] = ("llama.cpp's built-in template for this family renders it differently (e.g. without the "
                          "model's default system prompt): serve with llama-server --jinja")
    result.update(status="fail" if problems else "pass", problems=problems)
    return result


def held_out_ids(tokenizer: Any, texts: tuple[str, ...] | list[str] = HELD_OUT, limit: int = 512) -> list[list[int]]:
    """Token id sequences (BOS first when the tokenizer has one) for the agreement and perplexity checks."""
    chunks = []
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    for text in texts:
        ids = bos + list(tokenizer.encode(text, add_special_tokens=False))
        if len(ids) > 1:
            chunks.append(ids[:limit])
    return chunks


def gguf_logits(llm: Any, ids: list[int]) -> Any:
    """llama.cpp's logits for every position of `ids` (a fresh context each call)."""
    import numpy as np

    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float64)


def hf_logits(model: Any, ids: list[int]) -> Any:
    import torch

    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0].double().numpy()


def check_agreement(model: Any, llm: Any, chunks: list[list[int]]) -> dict[str, Any]:
    """(c) Next-token top-1 agreement between the HF model and the GGUF over held-out text."""
    agree = total = 0
    for ids in chunks:
        a = hf_logits(model, ids).argmax(-1)
        b = gguf_logits(llm, ids).argmax(-1)
        agree += int((a == b).sum())
        total += len(ids)
    rate = agree / total if total else 0.0
    status = "pass" if rate >= TOP1_GOAL else ("warn" if rate >= 0.95 else "fail")
    return {"status": status, "top1_agreement": round(rate, 5), "positions": total, "goal": TOP1_GOAL}


def perplexity_gguf(llm: Any, chunks: list[list[int]]) -> float:
    """Perplexity of a GGUF over token chunks (each predicts its own next tokens)."""
    import numpy as np

    nll = 0.0
    count = 0
    for ids in chunks:
        logits = gguf_logits(llm, ids)[:-1]
        shifted = logits - logits.max(-1, keepdims=True)
        logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        nll -= float(logp[np.arange(len(ids) - 1), ids[1:]].sum())
        count += len(ids) - 1
    return math.exp(nll / count) if count else float("nan")


def check_quant(quant: Path, parent: Path, chunks: list[list[int]], qtype: str) -> dict[str, Any]:
    """(d) A quant's perplexity against its f16/f32 parent's on the same tokens."""
    n_ctx = max(len(c) for c in chunks) + 8
    ppl_parent = perplexity_gguf(load_llama(parent, logits_all=True, n_ctx=n_ctx), chunks)
    ppl_quant = perplexity_gguf(load_llama(quant, logits_all=True, n_ctx=n_ctx), chunks)
    delta = (ppl_quant - ppl_parent) / ppl_parent
    ok, warn = ppl_delta_limits(qtype)
    status = "pass" if delta <= ok else ("warn" if delta <= warn else "fail")
    return {"status": status, "perplexity": round(ppl_quant, 4), "parent_perplexity": round(ppl_parent, 4),
            "delta": round(delta, 5), "limit": ok, "warn_limit": warn,
            "llama_cpp_increase": LLAMA_CPP_PPL_INCREASE.get(qtype)}


def check_conversion(model_dir: Path, gguf_path: Path, texts: list[str] | None = None,
                     tokenizer: Any | None = None) -> dict[str, Any]:
    """Checks (a)-(c) for a GGUF converted from `model_dir` (f32/f16/bf16); `tokenizer` is the model's own,
    when the caller has it loaded already."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.gguf.reader import read_metadata

    tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(model_dir))
    meta = read_metadata(gguf_path)
    vocab = load_llama(gguf_path, vocab_only=True)
    tokens = check_tokens(tokenizer, vocab)
    del vocab
    template = check_template(tokenizer, meta)
    chunks = held_out_ids(tokenizer, [*HELD_OUT, *(texts or [])])
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch.float32)
    model.eval()
    n_ctx = max(len(c) for c in chunks) + 8
    agreement = check_agreement(model, load_llama(gguf_path, logits_all=True, n_ctx=n_ctx), chunks)
    checks = {"tokens": tokens, "template": template, "agreement": agreement}
    return {"status": worst([c["status"] for c in checks.values()]), **checks}


def check_adapter_conversion(base_dir: Path, adapter_dir: Path, base_gguf: Path, lora_gguf: Path,
                             texts: list[str] | None = None) -> dict[str, Any]:
    """(c) for a GGUF adapter: the base GGUF with it applied (llama.cpp's --lora) predicts the same next
    tokens as the base model with the PEFT adapter."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir if (adapter_dir / "tokenizer_config.json").is_file()
                                                  else base_dir))
    chunks = held_out_ids(tokenizer, [*HELD_OUT, *(texts or [])])
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
    import llama_cpp

    n_ctx = max(len(c) for c in chunks) + 8
    threads = default_threads(cap=None)
    llm = llama_cpp.Llama(model_path=str(base_gguf), lora_path=str(lora_gguf), logits_all=True, n_ctx=n_ctx,
                          n_threads=threads, n_threads_batch=threads, n_gpu_layers=0, verbose=False)
    agreement = check_agreement(model, llm, chunks)
    return {"status": agreement["status"], "agreement": agreement}
