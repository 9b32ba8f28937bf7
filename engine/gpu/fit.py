"""The nearest settings that fit a GPU: a search over the changes that trade speed or quality for memory.

Each knob has a ladder of steps away from the user's value, and each step a cost (how much the run
changes): a smaller micro-batch with more accumulation keeps the effective batch (cost 1 per halving),
gradient checkpointing (1), an 8-bit optimizer (1), a cheaper method (lora -> qlora 2, full -> lora 3),
with several GPUs a sharding strategy (1) or CPU offload (2-3),
a lower LoRA rank (2 per halving) and a shorter max length (3 per halving: it drops content). Every
combination is estimated; the fitting ones are taken cheapest first, skipping any that turns every knob
a cheaper one already taken turns (so each suggestion is a different way to fit, not the same plus more).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

from engine.gpu.estimate import HEADROOM, Factor, Settings, Suggestion, total_bytes, with_changes
from engine.gpu.layout import Layout

MIN_LENGTH = 256
MIN_RANK = 4
METHOD_LADDER = {"full": ("full", "lora", "qlora"), "lora": ("lora", "qlora"), "qlora": ("qlora",)}
METHOD_COST = {("full", "lora"): 3, ("full", "qlora"): 5, ("lora", "qlora"): 2}
LIMIT = 3


@dataclass(frozen=True)
class _Step:
    """One rung of one knob: the fields it sets, its cost and how it reads."""

    fields: tuple[tuple[str, object], ...]
    cost: int
    text: str


def _halvings(value: int, floor: int) -> list[int]:
    out = [value]
    while out[-1] // 2 >= floor:
        out.append(out[-1] // 2)
    return out


def _ladders(s: Settings) -> list[list[_Step]]:
    batch = []
    for i, b in enumerate(_halvings(s.batch, 1)):
        accum = math.ceil(s.effective_batch / b)
        text = f"batch {s.batch}→{b} with grad accum {s.grad_accum}→{accum} (effective batch {b * accum})"
        batch.append(_Step((("batch", b), ("grad_accum", accum)), i, text))
    length = [_Step((("max_length", n),), 3 * i, f"max length {s.max_length}→{n}")
              for i, n in enumerate(_halvings(s.max_length, min(MIN_LENGTH, s.max_length)))]  # fmt: skip
    ckpt = [_Step((), 0, "")]
    if not s.gradient_checkpointing:
        ckpt.append(_Step((("gradient_checkpointing", True),), 1, "gradient checkpointing on"))
    optim = [_Step((), 0, "")]
    if s.optimizer == "adamw":
        optim.append(_Step((("optimizer", "adamw_8bit"),), 1, "optimizer adamw→adamw_8bit"))
    method = [_Step((("method", m),), METHOD_COST.get((s.method, m), 0), f"method {s.method}→{m}")
              for m in METHOD_LADDER[s.method]]  # fmt: skip
    rank = [_Step((("rank", r),), 2 * i, f"LoRA rank {s.rank}→{r}")
            for i, r in enumerate(_halvings(s.rank, min(MIN_RANK, s.rank)))]  # fmt: skip
    return [_sharding(s), batch, length, ckpt, optim, method, rank]


SHARDING_STEPS = ((("deepspeed_zero2", "none"), 1), (("fsdp", "none"), 1), (("deepspeed_zero3", "none"), 1),
                  (("deepspeed_zero3", "optimizer"), 2), (("fsdp", "all"), 3), (("deepspeed_zero3", "all"), 3))


def _sharding(s: Settings) -> list[_Step]:
    """Splitting model state across several GPUs, then offloading it to CPU memory (only with several GPUs)."""
    steps = [_Step((), 0, "")]
    if s.gpus > 1:
        for (strategy, offload), cost in SHARDING_STEPS:
            if (strategy, offload) != (s.strategy, s.offload):
                moves = [f"strategy {s.strategy}→{strategy}"] if strategy != s.strategy else []
                if offload != s.offload:
                    moves.append(f"offload {s.offload}→{offload}")
                text = " with ".join(moves)
                steps.append(_Step((("strategy", strategy), ("offload", offload)), cost, text))
    return steps


def _candidates(s: Settings) -> Iterator[tuple[tuple[int, ...], list[_Step]]]:
    ladders = _ladders(s)
    for index in itertools.product(*(range(len(ladder)) for ladder in ladders)):
        steps = [ladder[i] for ladder, i in zip(ladders, index, strict=True)]
        yield index, steps


def _knobs(index: tuple[int, ...]) -> frozenset[int]:
    """The knobs a candidate turns."""
    return frozenset(i for i, step in enumerate(index) if step > 0)


def nearest_fits(layout: Layout, s: Settings, free_bytes: int, factor: Factor | None = None,
                 limit: int = LIMIT) -> list[Suggestion]:  # fmt: skip
    """Up to `limit` nearest settings whose estimate fits within HEADROOM of `free_bytes`, cheapest first."""
    budget = free_bytes * HEADROOM
    fitting: list[tuple[int, int, tuple[int, ...], Settings, list[str]]] = []
    for index, steps in _candidates(s):
        fields = dict(pair for step in steps for pair in step.fields)
        method = fields.get("method", s.method)
        if method == "full" and index[-1] > 0:
            continue  # the rank does not matter to full fine-tuning
        if method == "qlora" and fields.get("strategy", s.strategy) != "ddp":
            continue  # 4-bit weights are not sharded (the run would be refused)
        candidate = with_changes(s, **fields)
        total = total_bytes(layout, candidate, factor)
        if total <= budget:
            changes = [step.text for step, i in zip(steps, index, strict=True) if i > 0 and step.text]
            fitting.append((sum(step.cost for step in steps), total, index, candidate, changes))
    fitting.sort(key=lambda f: (f[0], f[1], f[2]))
    kept: list[tuple[int, int, tuple[int, ...], Settings, list[str]]] = []
    for candidate in fitting:
        knobs = _knobs(candidate[2])
        if any(_knobs(k[2]) <= knobs for k in kept):
            continue  # a cheaper fit turns only some of these knobs
        kept.append(candidate)
        if len(kept) == limit:
            break
    return [Suggestion(settings, changes, total, cost) for cost, total, _, settings, changes in kept]
