"""`tunedeck model ...`: register base models (a folder, a GGUF, a hub id), list them, list their modules."""

from __future__ import annotations

import argparse
from typing import Any

from cli.common import human_size, open_from_args, print_json, table, when
from cli.job import finish_queued
from core.models import source_text

DTYPE_CHOICES = ("auto", "fp32", "bf16", "fp16")


def register(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    model = verbs.add_parser("model", help="base models: add (folder, GGUF or hub id), list, modules",
                             parents=[common])
    mverbs = model.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(model))
    p = mverbs.add_parser(
        "add", parents=[common], help="register a base model in a project (runs as a job)",
        description="SOURCE is a model folder (registered where it is), a GGUF file (dequantized into a "
                    "transformers folder under the home) or a hub id org/name (downloaded into the Hugging Face "
                    "cache, HF_HOME honoured; an interrupted download resumes). The model is then usable as "
                    "--model NAME in run new, estimate and merge-models.")
    p.add_argument("project")
    p.add_argument("source", metavar="SOURCE", help="model folder, .gguf file or hub id (org/name)")
    p.add_argument("--name", help="artifact name (default: the folder, file or repo name)")
    p.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto",
                   help="GGUF only: dtype of the dequantized weights (auto = fp32)")
    p.add_argument("--wait", action="store_true", help="wait for the job (progress bar); exit non-zero if it fails")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_model_add)
    p = mverbs.add_parser("list", help="a project's models (registered, trained in full, merged)", parents=[common])
    p.add_argument("project")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_model_list)
    p = mverbs.add_parser("modules", help="a model's linear layer names (for lora.target_modules)", parents=[common])
    p.add_argument("model", metavar="PATH|ID|NAME")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_model_modules)


def cmd_model_add(args: argparse.Namespace) -> int:
    from core.models import queue_model_add

    store = open_from_args(args)
    job_id = queue_model_add(store, args.project, args.source, name=args.name, dtype=args.dtype)
    code = finish_queued(args, store, job_id, "model add")
    if args.wait and not args.json:
        from cli.job import read_job

        result = read_job(store, job_id).result
        for key in ("source_type", "source_sha", "note"):
            if result.get(key):
                print(f"  {key:<12} {result[key]}")
    return code


def model_rows(store: Any, project: str) -> list[Any]:
    """The project's model artifacts (kinds model and merged), oldest first."""
    from store.artifacts import list_artifacts
    from store.projects import get_project

    with store.read() as session:
        return [a for a in list_artifacts(session, get_project(session, project).id) if a.kind in {"model", "merged"}]


def cmd_model_list(args: argparse.Namespace) -> int:
    rows = model_rows(open_from_args(args), args.project)
    if args.json:
        print_json([a.model_dump() for a in rows])
        return 0
    lines = [(a.id, a.kind, a.name, source_text(a.meta), human_size(a.size), when(a.created_at)) for a in rows]
    print(table(("ID", "KIND", "NAME", "SOURCE", "SIZE", "ADDED"), lines) if lines else
          f"no models in {args.project} (tunedeck model add {args.project} SOURCE)")
    return 0


def cmd_model_modules(args: argparse.Namespace) -> int:
    from core.models import model_modules

    names = model_modules(open_from_args(args), args.model)
    if args.json:
        print_json(names)
    else:
        print("\n".join(f"{n}  ({count} layers)" for n, count in names.items()))
    return 0
