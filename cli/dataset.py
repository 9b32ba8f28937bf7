"""`tunedeck dataset ...`: import (as a job), list, show and delete datasets."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cli.common import UsageError, open_from_args, print_json, table, when
from cli.job import wait_for_job
from store.db import Store
from store.errors import TunedeckError

FORMATS = ("auto", "alpaca", "chat", "sharegpt", "input_output", "preference", "kto", "text")


def register(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    ds = verbs.add_parser("dataset", help="import, list, show and delete training datasets", parents=[common])
    dverbs = ds.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(ds))
    p = dverbs.add_parser("add", help="import a file, folder or Hugging Face dataset (runs as a job)",
                          parents=[common])
    p.add_argument("project")
    p.add_argument("source", help=".jsonl/.json/.csv/.parquet/.txt file (or gzipped), a folder of them, or a hub "
                                  "id[:config[:split]]")
    p.add_argument("--name", help="dataset name (default: the source's stem)")
    p.add_argument("--format", default="auto", choices=FORMATS)
    p.add_argument("--val-fraction", type=float, default=0.1, metavar="F")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dedup", default="exact", choices=("none", "exact", "near"))
    p.add_argument("--near-threshold", type=float, default=0.85, metavar="J",
                   help="Jaccard similarity above which two examples are near-duplicates")
    p.add_argument("--on-error", default="fail", choices=("fail", "skip"))
    p.add_argument("--tokenizer", metavar="MODEL", help="model whose tokenizer and chat template measure lengths")
    p.add_argument("--max-length", type=int, default=2048, metavar="N")
    p.add_argument("--no-wait", action="store_true", help="queue the import and return its job id")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_dataset_add)
    p = dverbs.add_parser("list", help="a project's datasets", parents=[common])
    p.add_argument("project")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_dataset_list)
    p = dverbs.add_parser("show", help="a dataset's lint report", parents=[common])
    p.add_argument("ref", metavar="NAME|ID")
    p.add_argument("--project", help="the project, when several datasets share the name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_dataset_show)
    p = dverbs.add_parser("delete", help="delete a dataset with its snapshot, or a failed import",
                          parents=[common])
    p.add_argument("ref", metavar="NAME|ID")
    p.add_argument("--project", help="the project, when several datasets share the name")
    p.add_argument("--force", action="store_true", help="delete it even though ended runs or evaluations used it")
    p.set_defaults(func=cmd_dataset_delete)


def _check_args(args: argparse.Namespace) -> None:
    if not 0 <= args.val_fraction < 1:
        raise UsageError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    if not 0 < args.near_threshold <= 1:
        raise UsageError(f"--near-threshold must be in (0, 1], got {args.near_threshold}")
    if args.max_length < 1:
        raise UsageError(f"--max-length must be positive, got {args.max_length}")


def cmd_dataset_add(args: argparse.Namespace) -> int:
    from core.datasets import queue_import

    _check_args(args)
    store = open_from_args(args)
    job_id = queue_import(
        store, args.project, args.source, name=args.name, format=args.format, val_fraction=args.val_fraction,
        seed=args.seed, dedup=args.dedup, near_threshold=args.near_threshold, on_error=args.on_error,
        tokenizer=args.tokenizer, max_length=args.max_length,
    )
    if args.no_wait:
        print_json({"job_id": job_id}) if args.json else print(f"queued import as job {job_id}")
        return 0
    job = wait_for_job(store, job_id, f"importing {args.source}", show_progress=not args.json)
    if job.status != "completed":
        print(f"error: import failed (job {job_id}, {job.status}): {job.error}", file=sys.stderr)
        return 1
    return _show(store, str(job.result["dataset_id"]), None, args.json)


def cmd_dataset_list(args: argparse.Namespace) -> int:
    from store.views import IMPORT_ACTIVE, json_dict, listed_imports, project_contents

    store = open_from_args(args)
    with store.raw() as conn:
        contents = project_contents(conn, args.project)
    imports = listed_imports(contents.datasets, contents.jobs)
    if args.json:
        from store.datasets import list_datasets

        with store.read() as session:
            datasets = [d.model_dump() for d in list_datasets(session, contents.id)]
        rows = [{"kind": "import" if j.status in IMPORT_ACTIVE else "failed", "id": None, "job_id": j.id,
                 "name": j.name, "status": j.status, "progress": j.progress, "error": j.error,
                 "updated_at": j.updated_at} for j in imports]
        print_json(rows + [{"kind": "dataset", **d, "status": "ready"} for d in datasets])
    elif not imports and not contents.datasets:
        print(f"no datasets in {args.project} yet: `tunedeck dataset add {args.project} FILE`")
    else:
        lines = [("-", j.name, "-", "-", "-",
                  f"importing ({round(100 * (j.progress or 0))}%, job {j.id})" if j.status in IMPORT_ACTIVE
                  else f"{j.status} import (job {j.id})", when(j.updated_at)) for j in imports]
        lines += [(d.id, d.name, d.format, d.num_train, d.num_val, json_dict(d.lint).get("verdict", "-"),
                   when(d.created_at)) for d in contents.datasets]
        print(table(("ID", "NAME", "FORMAT", "TRAIN", "VAL", "VERDICT", "CREATED"), lines))
        if any(j.status not in IMPORT_ACTIVE for j in imports):
            print("failed imports: `tunedeck job show JOB` shows why, `tunedeck dataset delete NAME` removes them")
    return 0


def cmd_dataset_delete(args: argparse.Namespace) -> int:
    from core.datasets import delete_dataset

    print(delete_dataset(open_from_args(args), args.ref, args.project, force=args.force))
    return 0


def _show(store: Store, ref: str, project: str | None, as_json: bool) -> int:
    from engine.datasets.lint_report import print_report
    from store.datasets import find_dataset

    with store.read() as session:
        dataset = find_dataset(session, ref, project)
    report_path = Path(dataset.path) / "report.json"
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TunedeckError(f"dataset {dataset.id}: cannot read its report {report_path} ({exc})") from None
    if as_json:
        print_json({**dataset.model_dump(), "report": report})
        return 0
    print(f"dataset {dataset.name} (id {dataset.id}), {dataset.format}, from {dataset.source}")
    print(f"  snapshot {dataset.path}  hash {dataset.content_hash[:16]}")
    sys.stdout.flush()
    print_report(report, sys.stdout)
    return 0


def cmd_dataset_show(args: argparse.Namespace) -> int:
    return _show(open_from_args(args), args.ref, args.project, args.json)
