"""`tunedeck merge` (an adapter into its base) and `tunedeck merge-models` (several models or adapters)."""

from __future__ import annotations

import argparse
import sys

from cli.common import UsageError, open_from_args
from cli.job import finish_queued


def register(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from core.artifacts import merge_choices

    dtypes, methods = merge_choices()

    p = verbs.add_parser("merge", help="merge an adapter into its base model (runs as a job)", parents=[common])
    p.add_argument("artifact", metavar="ARTIFACT", help="the adapter artifact (id or name)")
    p.add_argument("--dtype", choices=dtypes, default="fp32", help="dtype to load and save the model in")
    p.add_argument("--name", help="name of the merged artifact (default: ADAPTER-merged)")
    p.add_argument("--wait", action="store_true", help="wait for the job; exit non-zero unless it completed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_merge)

    p = verbs.add_parser(
        "merge-models", parents=[common],
        help="merge several full models, or several LoRA adapters of one base (runs as a job)",
        description="Merge INPUTs (all full models, or all LoRA adapters trained on BASE) onto BASE. linear: "
                    "weighted average; slerp: spherical interpolation of exactly two inputs at t=--weights; ties, "
                    "dare_ties, dare_linear: on task vectors (input - base) with --density. Inputs and base are "
                    "artifact ids/names or model folders.",
    )
    p.add_argument("project")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="models or adapters to merge")
    p.add_argument("--method", required=True, choices=methods)
    p.add_argument("--base", required=True, metavar="BASE", help="the base model (artifact or folder)")
    p.add_argument("--weights", nargs="+", metavar="W",
                   help="one weight per input (default equal), or t for slerp (default 0.5); give them after the "
                        "inputs or comma-separated (--weights 0.7,0.3)")
    p.add_argument("--density", type=float, metavar="D",
                   help="fraction of each task vector kept, ties/dare only (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of DARE's random drop")
    p.add_argument("--name", help="name of the merged artifact (default: METHOD-merge)")
    p.add_argument("--wait", action="store_true", help="wait for the job; exit non-zero unless it completed")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_merge_models)


def parse_weights(values: list[str] | None) -> list[float] | None:
    """Floats from `--weights` values, which may also be comma-separated."""
    if values is None:
        return None
    try:
        return [float(part) for value in values for part in value.split(",") if part.strip()]
    except ValueError:
        raise UsageError(f"--weights takes numbers, got {' '.join(values)}") from None


def cmd_merge(args: argparse.Namespace) -> int:
    from core.artifacts import queue_merge

    store = open_from_args(args)
    job_id = queue_merge(store, args.artifact, dtype=args.dtype, name=args.name)
    return finish_queued(args, store, job_id, "merge")


def cmd_merge_models(args: argparse.Namespace) -> int:
    from core.artifacts import queue_merge_models

    store = open_from_args(args)
    job_id = queue_merge_models(
        store, args.project, args.base, args.inputs, args.method, parse_weights(args.weights), args.density,
        args.name, seed=args.seed, on_warning=lambda msg: print(f"warning: {msg}", file=sys.stderr),
    )
    return finish_queued(args, store, job_id, "merge-models")
