"""Advisory checks: values that are valid but outside a good recipe's recommended ranges."""

from __future__ import annotations

from engine.train.config.errors import show_number
from engine.train.config.schema import RunConfig

__all__ = ["config_warnings", "warnings"]

_LR_RANGES = {  # (low, high, label)
    "dpo": (5e-7, 5e-6, "DPO"),
    "kto": (5e-7, 5e-6, "KTO"),
    "orpo": (1e-6, 1e-4, "ORPO"),
    "grpo": (1e-6, 5e-5, "GRPO"),
    "full": (5e-6, 1e-4, "full fine-tuning"),
    "lora": (1e-5, 3e-4, "LoRA"),
}


def _outside(value: float, low: float, high: float) -> bool:
    return value < low * (1 - 1e-9) or value > high * (1 + 1e-9)


def warnings(cfg: RunConfig) -> list[str]:
    """Values that are valid but outside a good recipe's ranges, one line each, naming the field and the range."""
    out: list[str] = []
    t = cfg.training
    uses_lora = cfg.method in {"lora", "qlora"}
    kind = cfg.objective if cfg.objective in _LR_RANGES else ("lora" if uses_lora else "full")
    low, high, label = _LR_RANGES[kind]
    if _outside(t.learning_rate, low, high):
        out.append(f"training.learning_rate: {show_number(t.learning_rate)} is outside the recommended range "
                   f"{show_number(low)}..{show_number(high)} for {label}")
    if uses_lora:
        r, alpha = cfg.lora.r, cfg.lora.alpha
        if _outside(r, 8, 64):
            out.append(f"lora.r: {r} is outside the recommended range 8..64")
        if _outside(alpha, r, 4 * r):
            out.append(f"lora.alpha: {alpha} is outside the recommended range r..4r ({r}..{4 * r}; 2r is common)")
    if t.max_steps <= 0 and _outside(t.epochs, 1, 5):
        out.append(f"training.epochs: {show_number(t.epochs)} is outside the recommended range 1..5")
    gpus = max(1, len(cfg.devices), cfg.cpu_processes)
    effective = t.per_device_batch * t.grad_accum * gpus
    if _outside(effective, 8, 64):
        out.append(f"training.per_device_batch x training.grad_accum: effective batch {effective} "
                   f"({t.per_device_batch} x {t.grad_accum} x {gpus} device{'s' if gpus > 1 else ''}) "
                   "is outside the recommended range 8..64")
    if _outside(t.warmup, 0.03, 0.1):
        out.append(f"training.warmup: {show_number(t.warmup)} is outside the recommended range 0.03..0.1")
    if cfg.objective == "dpo" and _outside(cfg.dpo.beta, 0.01, 0.5):
        out.append(f"dpo.beta: {show_number(cfg.dpo.beta)} is outside the recommended range 0.01..0.5")
    if cfg.objective == "kto" and _outside(cfg.kto.beta, 0.01, 0.5):
        out.append(f"kto.beta: {show_number(cfg.kto.beta)} is outside the recommended range 0.01..0.5")
    if cfg.objective == "orpo" and _outside(cfg.orpo.beta, 0.05, 0.5):
        out.append(f"orpo.beta: {show_number(cfg.orpo.beta)} is outside the recommended range 0.05..0.5")
    if cfg.objective != "sft" and t.packing is True:
        out.append(f"training.packing: ignored for {cfg.objective.upper()} (only SFT packs examples)")
    if cfg.strategy != "ddp" and len(cfg.devices) == 1:
        out.append(f"strategy: {cfg.strategy} has no effect on a single device")
    if cfg.offload != "none" and cfg.strategy == "ddp":
        out.append(f"offload: {cfg.offload} has no effect with strategy ddp (use fsdp or deepspeed)")
    return out


config_warnings = warnings
