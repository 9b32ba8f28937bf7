"""Speed defaults of a training run, resolved for this machine: attention kernel, optimizer, padding-free packing,
Liger kernels and torch.compile. Each run-config field has a safe fallback; the choice and its reason go to the
run's log and result.

Packing: TRL 1.16's SFTTrainer with packing (strategy bfd) runs padding-free: the examples of a batch are
concatenated into one row whose position_ids restart at 0 at each example, with no attention mask. FlashAttention
uses the sequence boundaries (cu_seq_lens). For sdpa and eager, transformers 5.x's masking_utils
(find_packed_sequence_indices) turns the restarting position_ids into a block-diagonal causal mask when the
attention mask is None, so examples stay apart there too; a model with its own remote code may not build its mask
that way, so packing stays off for trust_remote_code models unless asked for.
"""

from __future__ import annotations

import importlib.util
from dataclasses import asdict, dataclass, field
from typing import Any

from engine.train.config import RunConfig
from store.errors import TunedeckError


@dataclass
class Speed:
    """The resolved speed settings and one reason per choice."""

    attn_implementation: str
    optimizer: str
    packing: bool
    liger_kernel: bool
    torch_compile: bool
    reasons: list[str] = field(default_factory=list)

    def result(self) -> dict[str, Any]:
        """The fields a run's result shows."""
        return {k: v for k, v in asdict(self).items() if k != "reasons"}

    def log_line(self) -> str:
        """One line for the run's log: each choice, then why."""
        return (f"speed: attention {self.attn_implementation}, optimizer {self.optimizer}, packing "
                f"{'on' if self.packing else 'off'}, liger {'on' if self.liger_kernel else 'off'}, torch.compile "
                f"{'on' if self.torch_compile else 'off'} ({'; '.join(self.reasons)})")


def installed(module: str) -> bool:
    """Whether a module can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def resolve_speed(cfg: RunConfig, cuda: bool, have_flash: bool, have_liger: bool) -> Speed:
    """The speed settings of `cfg` on a machine with (or without) CUDA, flash-attn and liger-kernel. An explicit
    request the machine cannot honour is a TunedeckError naming the field and the fix."""
    t, reasons = cfg.training, []
    attn = t.attn_implementation
    if attn == "flash_attention_2" and not (cuda and have_flash):
        raise TunedeckError("training.attn_implementation: flash_attention_2 needs a CUDA GPU and the flash-attn "
                            "package (pip install flash-attn); use auto or sdpa")
    if attn == "auto":
        attn = "flash_attention_2" if cuda and have_flash else "sdpa"
        reasons.append("attention auto: " + ("flash-attn installed and CUDA present" if attn != "sdpa" else
                                             "sdpa (" + ("no CUDA" if not cuda else "flash-attn not installed") + ")"))
    optim = t.optimizer
    if optim == "adamw_torch_fused" and not cuda:
        raise TunedeckError("training.optimizer: adamw_torch_fused needs a CUDA GPU here; use auto or adamw_torch")
    if optim == "auto":
        optim = "adamw_torch_fused" if cuda else "adamw_torch"
        reasons.append(f"optimizer auto: {optim} ({'CUDA present' if cuda else 'no CUDA'})")
    packing = t.packing
    if cfg.objective != "sft":
        if packing == "auto":
            reasons.append(f"packing off: {cfg.objective} does not pack")
        packing = False
    elif packing == "auto":
        if cfg.trust_remote_code and attn != "flash_attention_2":
            packing = False
            reasons.append(f"packing off: a remote-code model may not keep packed examples apart under {attn}")
        else:
            packing = True
            reasons.append(f"packing on: padding-free, {attn} keeps examples apart" + (
                "" if attn == "flash_attention_2" else " (block-diagonal mask from position_ids)"))
    liger = t.liger_kernel
    if liger is True and not (cuda and have_liger):
        raise TunedeckError("training.liger_kernel: needs a CUDA GPU and the liger-kernel package "
                            "(pip install liger-kernel); use auto or false")
    if liger == "auto":
        liger = cuda and have_liger
        reasons.append("liger " + ("on: CUDA and liger-kernel present" if liger else
                                   "off: " + ("no CUDA" if not cuda else "liger-kernel not installed")))
    return Speed(attn, optim, bool(packing), bool(liger), t.torch_compile, reasons)


def detect_speed(cfg: RunConfig, cuda: bool) -> Speed:
    """`resolve_speed` for this machine."""
    return resolve_speed(cfg, cuda, installed("flash_attn"), installed("liger_kernel"))


def speed_args(speed: Speed) -> dict[str, Any]:
    """The TrainingArguments keywords of the resolved settings (packing goes to SFTConfig separately)."""
    return {"optim": speed.optimizer, "use_liger_kernel": speed.liger_kernel, "torch_compile": speed.torch_compile}


def sft_packing_args(speed: Speed) -> dict[str, Any]:
    """SFTConfig keywords: padding-free best-fit-decreasing packing of the training set; the eval set is not
    packed, so eval_loss stays comparable with `tunedeck eval` (its batches still run padding-free)."""
    if not speed.packing:
        return {"packing": False}
    return {"packing": True, "packing_strategy": "bfd", "eval_packing": False}
