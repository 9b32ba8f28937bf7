"""How much GPU memory a fine-tuning run needs: plain arithmetic over the model's config (no torch).

The model (per device, one GPU, no sharding):
- weights: LoRA keeps the base in the run's precision (bf16: 2 bytes/param). QLoRA stores every linear layer
  in NF4 (0.5 byte/param, plus 1/64 byte/param of 8-bit block constants and 4/(64*256) of second-level fp32
  constants with double quant; 4/64 without), and the embeddings, head, norms and biases in fp32, because
  peft's `prepare_model_for_kbit_training` (which tunedeck's trainer calls) upcasts every 16-bit parameter.
  Full fine-tuning: ASSUMED mixed precision: bf16 weights + fp32 master weights + fp32 gradients + fp32 Adam
  m and v (18 bytes/param). `full_precision="bf16"` models pure bf16 training instead (weights, gradients and
  Adam states in bf16: 8 bytes/param), which is what the trainer does today when it loads a model in bf16.
- LoRA/QLoRA adapters: rank r on every linear layer but the head (r x (in + out) each), kept in fp32 by peft;
  their fp32 gradients and optimizer states (AdamW: m and v in fp32, 8 bytes/param; 8-bit AdamW: 2 bytes).
- activations, per token and layer, with 16-bit activations and SDPA/flash attention (no s x s scores kept):
  2 bytes x (6h + 2·kv + 4i): the layer input, the input norm's output, q, the attention output, the
  residual sum and the post-attention norm's output (6h); k and v (2·kv = 2 x kv_heads x head_dim); gate,
  up, SiLU(gate) and their product (4i). This is the Llama (gated MLP, grouped-query attention) version of
  Korthikanti et al. 2022's 34·s·b·h bytes per layer for a GPT layer without the attention scores. With gradient
  checkpointing only each layer's input (2h bytes per token per layer) is kept, plus one layer's full set
  while it is recomputed. DPO doubles the sequences (chosen and rejected).
- logits: batch x length x vocab x 4 bytes (fp32), times 3 (the upcast logits, their log-softmax kept for
  the backward pass, and its gradient): this dominates small models with large vocabularies.
- a fixed overhead for the CUDA context, cuBLAS workspaces and allocator slack.

Several GPUs (`gpus` > 1) give the memory per GPU: ddp keeps a whole copy of everything on each;
deepspeed_zero2 splits the gradients, optimizer states and fp32 master weights across them; fsdp and
deepspeed_zero3 split the weights too. Offload moves the optimizer states and master weights ("optimizer")
or all model state ("all"; one layer's weights stay as the working set) to CPU memory. Activations and
logits are per GPU and never split.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from engine.gpu.layout import Layout
from store.errors import TunedeckError

GIB = 1024**3
MIB = 1024**2
# nf4 with double quant: 4 bits, an 8-bit absmax per block of 64, an fp32 constant per 256 blocks
NF4_DQ_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)
NF4_BYTES = 0.5 + 4 / 64  # nf4 without double quant: fp32 absmax per block of 64
INT8_BYTES = 1.0  # LLM.int8: one byte per weight (per-row scales are negligible)
LOGIT_COPIES = 3
OVERHEAD_BYTES = int(0.75 * GIB)
ADAPTER_BYTES = 4  # peft keeps adapters in fp32
HEADROOM = 0.9  # "fits" leaves 10% of the free memory unused; between that and all of it is "tight"
METHODS = ("lora", "qlora", "full")
OBJECTIVES = ("sft", "dpo")
OPTIMIZERS = ("adamw", "adamw_8bit", "paged_adamw_8bit")
PRECISIONS = {"bf16": 2, "fp16": 2, "fp32": 4}
FULL_PRECISIONS = ("mixed", "bf16")
STRATEGIES = ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3")
OFFLOADS = ("none", "optimizer", "all")
# What each strategy splits across GPUs (the rest is replicated).
SHARDED = {"ddp": frozenset(), "deepspeed_zero2": frozenset({"gradients", "optimizer", "master"}),
           "fsdp": frozenset({"weights", "gradients", "optimizer", "master", "reference"}),
           "deepspeed_zero3": frozenset({"weights", "gradients", "optimizer", "master", "reference"})}


class EstimateError(TunedeckError):
    """Settings the estimator cannot work with."""


@dataclass(frozen=True)
class Settings:
    """The run settings that decide memory. Defaults follow tunedeck's run schema."""

    method: str = "lora"
    max_length: int = 2048
    batch: int = 4
    grad_accum: int = 4
    rank: int = 16
    gradient_checkpointing: bool = True
    optimizer: str = "adamw"
    precision: str = "bf16"  # of the weights (lora, full) and the activations
    objective: str = "sft"
    full_precision: str = "mixed"
    double_quant: bool = True
    targets: tuple[str, ...] | None = None  # LoRA target module names; None = all linear layers
    gpus: int = 1
    strategy: str = "ddp"
    offload: str = "none"

    def check(self) -> None:
        """Raise EstimateError naming the first bad setting."""
        choices = {"method": METHODS, "optimizer": OPTIMIZERS, "precision": tuple(PRECISIONS),
                   "objective": OBJECTIVES, "full_precision": FULL_PRECISIONS, "strategy": STRATEGIES,
                   "offload": OFFLOADS}  # fmt: skip
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise EstimateError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        for name in ("max_length", "batch", "grad_accum", "rank", "gpus"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise EstimateError(f"{name} must be a positive integer, not {value!r}")

    @property
    def effective_batch(self) -> int:
        return self.batch * self.grad_accum


@dataclass(frozen=True)
class Item:
    """One line of the breakdown."""

    key: str
    label: str
    bytes: int
    detail: str = ""


@dataclass(frozen=True)
class Factor:
    """A calibration factor (measured / estimated peak) learned from past runs of a model family."""

    model_type: str
    method: str | None  # None: every method of the family
    factor: float
    samples: int


@dataclass
class Suggestion:
    """Settings that fit, and what changed to get there."""

    settings: Settings
    changes: list[str]
    total_bytes: int
    cost: int


@dataclass
class Estimate:
    """A breakdown, its total, and (when the free memory is known) a verdict and the nearest settings that fit."""

    model_type: str
    params: int
    param_source: str
    settings: Settings
    items: list[Item]
    trainable_params: int
    weights_by_precision: dict[str, int]
    raw_total_bytes: int
    total_bytes: int
    factor: Factor | None = None
    free_bytes: int | None = None
    free_source: str = ""
    verdict: str = "unknown"  # fits, tight, too big, unknown
    suggestions: list[Suggestion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; sizes in bytes, with `total_gib` for people."""
        data = asdict(self)
        data["total_gib"] = round(self.total_bytes / GIB, 2)
        data["total_mb"] = round(self.total_bytes / MIB, 1)
        data["raw_total_mb"] = round(self.raw_total_bytes / MIB, 1)
        data["method"] = self.settings.method
        return data


# ----------------------------------------------------------------------------- the arithmetic


def weights_by_precision(layout: Layout, double_quant: bool = True) -> dict[str, int]:
    """The model's weights stored in each precision (quantized ones keep the unquantized part in 16 bits)."""
    nf4 = NF4_DQ_BYTES if double_quant else NF4_BYTES
    rest = layout.unquantized_params
    return {
        "nf4": int(layout.linear_params * nf4 + rest * 2),
        "int8": int(layout.linear_params * INT8_BYTES + rest * 2),
        "bf16": layout.total_params * 2,
        "fp32": layout.total_params * 4,
    }


def activation_bytes_per_token_layer(layout: Layout, dtype_bytes: int = 2) -> int:
    """What one decoder layer keeps for the backward pass, per token (see the module docstring)."""
    kv = layout.kv_heads * layout.head_dim
    return dtype_bytes * (6 * layout.hidden + 2 * kv + 4 * layout.intermediate)


def activations(layout: Layout, s: Settings) -> int:
    """Activation memory for one micro-batch, with or without gradient checkpointing."""
    dtype_bytes = PRECISIONS[s.precision]
    tokens = s.batch * s.max_length * (2 if s.objective == "dpo" else 1)
    per_layer = activation_bytes_per_token_layer(layout, dtype_bytes)
    final = 2 * layout.hidden * dtype_bytes  # the final norm's input and output
    if s.gradient_checkpointing:
        return tokens * (layout.layers * layout.hidden * dtype_bytes + per_layer + final)
    return tokens * (layout.layers * per_layer + final)


def logits_bytes(layout: Layout, s: Settings) -> int:
    """The fp32 logits buffer times LOGIT_COPIES."""
    sequences = s.batch * (2 if s.objective == "dpo" else 1)
    return sequences * s.max_length * layout.vocab * 4 * LOGIT_COPIES


def _state_bytes(optimizer: str, adamw_bytes: int) -> int:
    return adamw_bytes if optimizer == "adamw" else 2


def breakdown(layout: Layout, s: Settings) -> tuple[list[Item], int]:
    """The breakdown's items and the number of trainable parameters."""
    total = layout.total_params
    items: list[Item] = []
    if s.method == "qlora":
        nf4 = NF4_DQ_BYTES if s.double_quant else NF4_BYTES
        quant = int(layout.linear_params * nf4)
        rest = layout.unquantized_params * 4
        items.append(Item("weights", "Base weights (NF4)", quant + rest,
                          f"{layout.linear_params / 1e9:.2f}B linear params at {nf4:.3f} B/param"
                          f"{' (double quant)' if s.double_quant else ''}; {layout.unquantized_params / 1e9:.2f}B "
                          "embedding/head/norm params in fp32 (upcast by prepare_model_for_kbit_training)"))
    elif s.method == "lora":
        items.append(Item("weights", f"Base weights ({s.precision})", total * PRECISIONS[s.precision],
                          f"{total / 1e9:.2f}B params, frozen"))
    if s.method in ("lora", "qlora"):
        trainable = layout.lora_params(s.rank, s.targets)
        states = _state_bytes(s.optimizer, 8)
        targets = "all linear layers" if s.targets is None else ", ".join(s.targets)
        items += [
            Item("adapters", f"LoRA adapters (r={s.rank})", trainable * ADAPTER_BYTES,
                 f"{trainable / 1e6:.1f}M params in fp32 on {targets}"),
            Item("gradients", "Adapter gradients", trainable * ADAPTER_BYTES, "fp32"),
            Item("optimizer", f"Optimizer states ({s.optimizer})", trainable * states, f"{states} B/param"),
        ]
    else:
        trainable = total
        mixed = s.full_precision == "mixed" and s.precision != "fp32"
        weight_bytes = PRECISIONS["bf16" if mixed else s.precision]
        grad_bytes = 4 if mixed else weight_bytes
        states = _state_bytes(s.optimizer, 8 if mixed else 2 * weight_bytes)
        items.append(Item("weights", f"Weights ({'bf16' if mixed else s.precision})", total * weight_bytes,
                          f"{total / 1e9:.2f}B params, all trained"))
        if mixed:
            items.append(Item("master", "Master weights (fp32)", total * 4, "mixed precision"))
        items += [
            Item("gradients", f"Gradients ({'fp32' if grad_bytes == 4 else s.precision})", total * grad_bytes),
            Item("optimizer", f"Optimizer states ({s.optimizer})", total * states, f"{states} B/param"),
        ]
        if s.objective == "dpo":
            items.append(Item("reference", "DPO reference model", total * weight_bytes, "a frozen copy"))
    items = _per_gpu(items, layout, s)
    ckpt = "with" if s.gradient_checkpointing else "without"
    items += [
        Item("activations", "Activations", activations(layout, s),
             f"batch {s.batch} x {s.max_length} tokens, {layout.layers} layers, {ckpt} gradient checkpointing"),
        Item("logits", "Logits", logits_bytes(layout, s),
             f"batch x length x vocab {layout.vocab:,} x 4 B x {LOGIT_COPIES} copies"),
        Item("overhead", "CUDA context and allocator", OVERHEAD_BYTES, "fixed"),
    ]  # fmt: skip
    return items, trainable


def _per_gpu(items: list[Item], layout: Layout, s: Settings) -> list[Item]:
    """Model-state items as one GPU holds them under the strategy and offload."""
    if s.gpus == 1 and s.offload == "none":
        return items
    sharded = SHARDED[s.strategy] if s.gpus > 1 else frozenset()
    offloaded = {"none": frozenset(), "optimizer": frozenset({"optimizer", "master"}),
                 "all": frozenset({"weights", "gradients", "optimizer", "master", "reference"})}[s.offload]
    out = []
    for item in items:
        if item.key in offloaded:
            keep = item.bytes // max(layout.layers, 1) if item.key == "weights" else 0  # one layer at a time
            out.append(replace(item, bytes=keep, detail=f"{item.detail}; offloaded to CPU memory".lstrip("; ")))
        elif item.key in sharded:
            out.append(replace(item, bytes=-(-item.bytes // s.gpus),
                               detail=f"{item.detail}; 1/{s.gpus} per GPU ({s.strategy})".lstrip("; ")))
        else:
            out.append(item)
    return out


def verdict(total: int, free: int | None) -> str:
    """fits (within HEADROOM of the free memory), tight (within all of it), too big, or unknown."""
    if free is None:
        return "unknown"
    if total <= free * HEADROOM:
        return "fits"
    return "tight" if total <= free else "too big"


def estimate(
    layout: Layout,
    settings: Settings | None = None,
    *,
    free_bytes: int | None = None,
    free_source: str = "",
    factor: Factor | None = None,
    suggest: bool = True,
) -> Estimate:
    """The memory a run needs on one GPU. `factor` (from past runs, see calibrate.py) scales the total and is
    reported; with `free_bytes`, a verdict, and when it does not fit the nearest settings that do."""
    s = settings or Settings()
    s.check()
    items, trainable = breakdown(layout, s)
    raw = sum(item.bytes for item in items)
    total = int(raw * factor.factor) if factor else raw
    result = Estimate(
        model_type=layout.model_type, params=layout.total_params, param_source=layout.source, settings=s,
        items=items, trainable_params=trainable, weights_by_precision=weights_by_precision(layout, s.double_quant),
        raw_total_bytes=raw, total_bytes=total, factor=factor, free_bytes=free_bytes, free_source=free_source,
        verdict=verdict(total, free_bytes), notes=list(layout.notes),
    )  # fmt: skip
    if factor:
        scope = f"{factor.method} runs of " if factor.method else ""
        result.notes.append(f"calibrated: x{factor.factor:.2f} from {factor.samples} past {scope}{factor.model_type} "
                            "runs (measured / estimated peak)")  # fmt: skip
    if s.method == "full" and s.full_precision == "mixed":
        result.notes.append("full fine-tuning assumes mixed precision (bf16 weights, fp32 master weights, "
                            "gradients and Adam states)")  # fmt: skip
    if suggest and result.verdict == "too big" and free_bytes is not None:
        from engine.gpu.fit import nearest_fits

        result.suggestions = nearest_fits(layout, s, free_bytes, factor)
    return result


def total_bytes(layout: Layout, settings: Settings, factor: Factor | None = None) -> int:
    """Just the (calibrated) total, for searching."""
    items, _ = breakdown(layout, settings)
    raw = sum(item.bytes for item in items)
    return int(raw * factor.factor) if factor else raw


def with_changes(settings: Settings, **changes: Any) -> Settings:
    """`settings` with some fields replaced."""
    return replace(settings, **changes)
