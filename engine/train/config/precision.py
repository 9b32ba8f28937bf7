"""Precision: ``auto`` and explicit dtype choices made concrete for the hardware at hand."""

from __future__ import annotations

from engine.train.config.errors import ConfigError
from engine.train.config.schema import RunConfig

__all__ = ["detect_precision", "resolve_compute_dtype", "resolve_precision"]


def _resolve(requested: str, field: str, cuda_available: bool, bf16_supported: bool) -> str:
    if requested == "auto":
        if not cuda_available:
            return "fp32"
        return "bf16" if bf16_supported else "fp16"
    if requested == "fp16" and not cuda_available:
        raise ConfigError(f"{field}: fp16 needs a CUDA GPU; use auto or fp32 on the CPU")
    if requested == "bf16" and cuda_available and not bf16_supported:
        raise ConfigError(f"{field}: this GPU does not support bf16; use auto or fp16")
    return requested


def resolve_precision(cfg: RunConfig, cuda_available: bool, bf16_supported: bool) -> str:
    """``training.precision`` made concrete: auto = bf16 on a GPU with bf16, fp16 on other GPUs, fp32 on CPU.

    An explicit choice is kept, except combinations the hardware cannot run (fp16 without a GPU, bf16 on a GPU
    without it), which raise ConfigError. bf16 on the CPU is allowed (it works, slowly).
    """
    return _resolve(cfg.training.precision, "training.precision", cuda_available, bf16_supported)


def resolve_compute_dtype(cfg: RunConfig, cuda_available: bool, bf16_supported: bool) -> str:
    """``quant.compute_dtype`` made concrete, by the same rule as ``resolve_precision``."""
    return _resolve(cfg.quant.compute_dtype, "quant.compute_dtype", cuda_available, bf16_supported)


def detect_precision(cfg: RunConfig) -> str:
    """``resolve_precision`` for this machine (imports torch)."""
    import torch

    cuda = bool(torch.cuda.is_available())
    return resolve_precision(cfg, cuda, cuda and bool(torch.cuda.is_bf16_supported()))
