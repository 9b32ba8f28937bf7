"""`tunedeck gpu` (the GPUs now, tunedeck's jobs marked) and `tunedeck estimate` (memory a run needs)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from cli.common import UsageError, print_json, table

if TYPE_CHECKING:
    from engine.gpu.estimate import Estimate
    from engine.gpu.types import Snapshot
    from store.db import Store

GIB = 1024**3


def register(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = verbs.add_parser("gpu", help="GPUs now: utilization, memory, temperature, power, processes",
                         parents=[common])  # fmt: skip
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_gpu)

    p = verbs.add_parser("estimate", help="GPU memory a fine-tuning run needs, and settings that fit",
                         parents=[common])  # fmt: skip
    p.add_argument("--model", metavar="M", help="a model folder (its config.json is read, no weights), or a hub id")
    p.add_argument("--method", choices=("lora", "qlora", "full"), default="lora")
    p.add_argument("--objective", choices=("sft", "dpo"), default="sft")
    p.add_argument("--max-length", type=int, default=2048, metavar="N", help="tokens per sequence (default 2048)")
    p.add_argument("--batch", type=int, default=4, metavar="B", help="sequences per device per step (default 4)")
    p.add_argument("--grad-accum", type=int, default=4, metavar="G", help="gradient accumulation steps (default 4)")
    p.add_argument("--rank", type=int, default=16, metavar="R", help="LoRA rank, on all linear layers (default 16)")
    p.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction, default=True,
                   help="recompute activations in the backward pass (default: on)")
    p.add_argument("--optimizer", choices=("adamw", "adamw_8bit", "paged_adamw_8bit"), default="adamw")
    p.add_argument("--precision", choices=("bf16", "fp16", "fp32"), default="bf16")
    p.add_argument("--full-precision", choices=("mixed", "bf16"), default="mixed",
                   help="full fine-tuning: mixed (fp32 master weights, gradients, Adam states) or pure bf16")
    p.add_argument("--gpus", type=int, default=1, metavar="N", help="GPUs the run uses (memory is per GPU)")
    p.add_argument("--strategy", choices=("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"), default="ddp",
                   help="with several GPUs: what is split across them (ddp: nothing)")
    p.add_argument("--offload", choices=("none", "optimizer", "all"), default="none",
                   help="model state moved to CPU memory (fsdp, deepspeed)")
    p.add_argument("--gpu-memory", type=float, metavar="GB",
                   help="compare with this much free memory (GiB) instead of the GPU's free memory now")
    p.add_argument("--gpu", type=int, metavar="INDEX", help="compare with this GPU (default: the one with most free)")
    p.add_argument("--no-calibration", action="store_true", help="ignore the correction learned from past runs")
    p.add_argument("--history", action="store_true", help="past runs' estimates next to their measured peaks")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_estimate)


# ----------------------------------------------------------------------------- shared


def existing_store(args: argparse.Namespace) -> Store | None:
    """The store of --home / TUNEDECK_HOME / XDG when it already exists (reading GPUs never creates one)."""
    from store.home import DB_NAME, resolve_home

    if not (resolve_home(getattr(args, "home", None)) / DB_NAME).is_file():
        return None
    from cli.common import open_from_args

    return open_from_args(args)


def snapshot_text(snap: Snapshot) -> str:
    """The GPUs as text (what `tunedeck gpu` prints)."""
    from engine.gpu.types import fmt, gib

    if not snap.available:
        return snap.message
    lines = [f"driver {snap.driver_version or 'n/a'}"]
    for gpu in snap.gpus:
        mem = f"{gib(gpu.memory_used_mb)} / {gib(gpu.memory_total_mb)}"
        power = f"{fmt(gpu.power_w, ' W')} / {fmt(gpu.power_limit_w, ' W')}"
        lines += [
            "",
            f"GPU {gpu.index}  {gpu.name or 'n/a'}",
            f"  util {fmt(gpu.util_pct, '%')}  memory {mem}  temp {fmt(gpu.temperature_c, ' C')}  power {power}",
            f"  clocks SM {fmt(gpu.sm_clock_mhz, ' MHz')}, memory {fmt(gpu.mem_clock_mhz, ' MHz')}",
        ]
        if not gpu.processes:
            lines.append("  no processes")
            continue
        rows = []
        for proc in gpu.processes:
            job = f"tunedeck job {proc.job.job_id} ({proc.job.kind} {proc.job.name})".rstrip() if proc.job else ""
            rows.append((proc.pid, gib(proc.memory_mb), proc.name or "n/a", job))
        lines += ["  " + line for line in table(("PID", "MEMORY", "PROCESS", "TUNEDECK"), rows).splitlines()]
    return "\n".join(lines)


def cmd_gpu(args: argparse.Namespace) -> int:
    from core.gpu import gpu_sampler, sample_gpus

    sampler = gpu_sampler()
    try:
        snap = sampler.sample()
        if snap.available:
            snap = sample_gpus(existing_store(args), sampler)  # the same sample, with our jobs marked
    finally:
        sampler.close()
    if args.json:
        print_json(snap.to_dict())
    else:
        print(snapshot_text(snap))
    return 0


# ----------------------------------------------------------------------------- estimate


def _free_memory(args: argparse.Namespace) -> tuple[int | None, str]:
    """Free bytes to compare with, and where the figure comes from."""
    if args.gpu_memory is not None:
        if args.gpu_memory <= 0:
            raise UsageError("estimate: --gpu-memory must be a positive number of GiB")
        return int(args.gpu_memory * GIB), f"{args.gpu_memory:g} GiB given"
    from core.gpu import gpu_sampler

    sampler = gpu_sampler()
    try:
        snap = sampler.sample()
    finally:
        sampler.close()
    if not snap.available:
        return None, f"{snap.message} Pass --gpu-memory GB to compare with a GPU."
    gpus = [g for g in snap.gpus if g.memory_free_mb is not None]
    if args.gpu is not None:
        gpus = [g for g in gpus if g.index == args.gpu]
        if not gpus:
            raise UsageError(f"estimate: no GPU {args.gpu} with a known free memory (see `tunedeck gpu`)")
    if not gpus:
        return None, "NVML does not report the GPUs' free memory; pass --gpu-memory GB."
    if args.gpus > 1 and args.gpu is None:  # the run's N cards: the best N, limited by the least free of them
        chosen = sorted(gpus, key=lambda g: g.memory_free_mb or 0.0, reverse=True)[: args.gpus]
        if len(chosen) < args.gpus:
            return None, f"--gpus {args.gpus}, but {len(chosen)} GPU(s) report their free memory here"
        least = chosen[-1]
        free = least.memory_free_mb or 0.0
        return int(free * 1024 * 1024), (f"the least free of GPUs {', '.join(str(g.index) for g in chosen)}: "
                                         f"GPU {least.index} has {free / 1024:.1f} GiB free now")
    best = max(gpus, key=lambda g: g.memory_free_mb or 0.0)
    free = best.memory_free_mb or 0.0
    return int(free * 1024 * 1024), f"GPU {best.index} ({best.name or 'n/a'}) has {free / 1024:.1f} GiB free now"


def run_estimate(args: argparse.Namespace) -> tuple[Estimate, str]:
    """The estimate the arguments ask for, and where the config came from."""
    from core.estimate import estimate_model, estimate_settings

    settings = estimate_settings(
        method=args.method, max_length=args.max_length, batch=args.batch, grad_accum=args.grad_accum, rank=args.rank,
        gradient_checkpointing=args.gradient_checkpointing, optimizer=args.optimizer, precision=args.precision,
        objective=args.objective, full_precision=args.full_precision, gpus=args.gpus, strategy=args.strategy,
        offload=args.offload)
    free, source = _free_memory(args)
    return estimate_model(existing_store(args), args.model, settings, free_bytes=free, free_source=source,
                          calibrate=not args.no_calibration)


def _gib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / GIB:.2f} GiB"


def estimate_text(est: Estimate, model: str) -> str:
    """The breakdown, total, verdict and suggestions as text."""
    s = est.settings
    lines = [
        f"{model}: {est.model_type}, {est.params / 1e9:.2f}B parameters ({est.param_source} count)",
        f"{s.method} {s.objective} · batch {s.batch} x grad accum {s.grad_accum} · max length {s.max_length}"
        + (f" · rank {s.rank}" if s.method != "full" else "")
        + f" · checkpointing {'on' if s.gradient_checkpointing else 'off'} · {s.optimizer} · {s.precision}"
        + (f" · {s.gpus} GPUs, {s.strategy}" if s.gpus > 1 else "")
        + (f", offload {s.offload}" if s.offload != "none" else ""),
        "",
    ]
    width = max(len(item.label) for item in est.items)
    for item in est.items:
        lines.append(f"  {item.label.ljust(width)}  {_gib(item.bytes):>11}  {item.detail}".rstrip())
    lines.append(f"  {'Total'.ljust(width)}  {_gib(est.total_bytes):>11}")
    lines += [f"  note: {note}" for note in est.notes]
    by = " · ".join(f"{k} {_gib(v)}" for k, v in est.weights_by_precision.items())
    lines += ["", f"Weights alone: {by}", ""]
    if est.free_bytes is None:
        lines.append(f"Verdict: unknown. {est.free_source}")
    else:
        lines.append(f"Verdict: {est.verdict} ({_gib(est.total_bytes)} needed; {est.free_source})")
    if est.verdict == "too big":
        if est.suggestions:
            lines.append("Nearest settings that fit:")
            for n, sug in enumerate(est.suggestions, 1):
                lines.append(f"  {n}. {'; '.join(sug.changes)}  ({_gib(sug.total_bytes)})")
        else:
            lines.append("No nearby settings fit: a GPU with more memory is needed.")
    return "\n".join(lines)


def history_text(rows: list[Any], factors: list[Any]) -> str:
    """Past estimates next to measured peaks, then the factors learned from them."""
    if not rows:
        return "no run has recorded a GPU memory estimate yet"
    body = [(r.job_id, r.name, r.model_type, r.method, f"{r.estimate_mb / 1024:.2f} GiB",
             "-" if r.measured_mb is None else f"{r.measured_mb / 1024:.2f} GiB",
             "-" if r.error_pct is None else f"{r.error_pct:+.1f}%") for r in rows]  # fmt: skip
    out = table(("JOB", "NAME", "FAMILY", "METHOD", "ESTIMATE", "MEASURED", "ERROR"), body)
    if factors:
        learned = ", ".join(f"{f.model_type}{'/' + f.method if f.method else ''} x{f.factor:.2f} ({f.samples} runs)"
                            for f in factors)  # fmt: skip
        out += f"\n\nCorrection factors: {learned}"
    else:
        out += "\n\nNo correction factor yet (a family needs 3 runs with a measured peak)."
    return out


def cmd_estimate(args: argparse.Namespace) -> int:
    if args.history:
        from dataclasses import asdict

        from core.estimate import estimate_history

        rows, factors = estimate_history(existing_store(args))
        if args.json:
            print_json({"runs": [r.to_dict() for r in rows], "factors": [asdict(f) for f in factors]})
        else:
            print(history_text(rows, factors))
        return 0
    if not args.model:
        raise UsageError("estimate: --model is required (or --history)")
    est, where = run_estimate(args)
    if args.json:
        print_json({"model": args.model, "config": where, **est.to_dict()})
    else:
        print(estimate_text(est, args.model))
    return 0
