"""The `tunedeck` command line: no verb opens the TUI; verbs do what the screens do.

Errors go to stderr as one line with a non-zero exit code; `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from store.errors import TunedeckError

if TYPE_CHECKING:
    from store.db import Store

EXIT_ERROR = 1
EXIT_USAGE = 2


class UsageError(TunedeckError):
    """The command line itself is wrong."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage and exit(2)
        raise UsageError(f"{self.prog}: {message}")


def _common() -> argparse.ArgumentParser:
    # SUPPRESS keeps a sub-command's default from overwriting a value given before the verb.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--home",
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="data directory (default: $TUNEDECK_HOME, else the XDG data dir)",
    )
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks on errors")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used to render `--help`)."""
    common = _common()
    parser = _Parser(
        prog="tunedeck",
        description="Fine-tune language models from the terminal. Without a verb, opens the app.",
        parents=[common],
    )
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)

    project = verbs.add_parser("project", help="create, list, show and delete projects", parents=[common])
    pverbs = project.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    p = pverbs.add_parser("create", help="create a project", parents=[common])
    p.add_argument("name")
    p.add_argument("--description", default="", metavar="TEXT")
    p.add_argument("--json", action="store_true", help="print the new project as JSON")
    p.set_defaults(func=cmd_project_create)
    p = pverbs.add_parser("list", help="list projects with their counts", parents=[common])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_project_list)
    p = pverbs.add_parser("show", help="show a project and what it holds", parents=[common])
    p.add_argument("name")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_project_show)
    p = pverbs.add_parser("delete", help="delete a project (refuses when it has runs unless --force)", parents=[common])
    p.add_argument("name")
    p.add_argument("--force", action="store_true", help="also delete its runs and their files")
    p.set_defaults(func=cmd_project_delete)

    p = verbs.add_parser("demo", help="create the demo project: a tiny local model and a dataset", parents=[common])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_demo)
    return parser


# --- helpers -------------------------------------------------------------------------------


def _open(args: argparse.Namespace) -> Store:
    from store.db import open_store

    return open_store(getattr(args, "home", None))


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(c) for c in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)


# --- project -------------------------------------------------------------------------------


def cmd_project_create(args: argparse.Namespace) -> int:
    from store.projects import create_project, project_summary

    store = _open(args)
    with store.write() as session:
        name = create_project(session, args.name, args.description).name
    with store.read() as session:
        summary = project_summary(session, name)
    if args.json:
        _print_json(summary.to_dict())
    else:
        print(f"created project {summary.name} (id {summary.id})")
    return 0


def cmd_project_list(args: argparse.Namespace) -> int:
    from store.projects import list_projects

    with _open(args).read() as session:
        projects = list_projects(session)
    if args.json:
        _print_json([p.to_dict() for p in projects])
    elif not projects:
        print("no projects yet: `tunedeck project create NAME` or `tunedeck demo`")
    else:
        rows = [(p.name, p.datasets, p.runs, p.artifacts, p.active_jobs, _when(p.updated_at)) for p in projects]
        print(_table(("NAME", "DATASETS", "RUNS", "ARTIFACTS", "ACTIVE", "UPDATED"), rows))
    return 0


def cmd_project_show(args: argparse.Namespace) -> int:
    from sqlmodel import select

    from store.models import Artifact, Dataset, Job
    from store.projects import project_summary

    with _open(args).read() as session:
        summary = project_summary(session, args.name)
        datasets = session.exec(select(Dataset).where(Dataset.project_id == summary.id)).all()
        jobs = session.exec(select(Job).where(Job.project_id == summary.id).order_by(Job.id.desc())).all()
        artifacts = session.exec(select(Artifact).where(Artifact.project_id == summary.id)).all()
    if args.json:
        data = summary.to_dict()
        data["datasets_list"] = [d.model_dump() for d in datasets]
        data["jobs"] = [j.model_dump() for j in jobs]
        data["artifacts_list"] = [a.model_dump() for a in artifacts]
        _print_json(data)
        return 0
    print(f"project {summary.name} (id {summary.id})")
    if summary.description:
        print(f"  {summary.description}")
    print(f"  created {_when(summary.created_at)}, updated {_when(summary.updated_at)}")
    print(f"\ndatasets ({len(datasets)})")
    for d in datasets:
        print(f"  {d.id:>4}  {d.name}  {d.format}  train {d.num_train} / val {d.num_val}")
    print(f"\njobs ({len(jobs)})")
    for j in jobs:
        total = f"/{j.total_steps}" if j.total_steps else ""
        print(f"  {j.id:>4}  {j.kind:<9} {j.status:<11} step {j.step}{total}  {j.name}")
    print(f"\nartifacts ({len(artifacts)})")
    for a in artifacts:
        print(f"  {a.id:>4}  {a.kind:<9} {a.name}  {a.path}")
    return 0


def cmd_project_delete(args: argparse.Namespace) -> int:
    from sqlmodel import select

    from store.models import Dataset, Job
    from store.projects import delete_project, get_project

    store = _open(args)
    with store.write() as session:
        project = get_project(session, args.name)
        job_ids = session.exec(select(Job.id).where(Job.project_id == project.id)).all()
        dataset_ids = session.exec(select(Dataset.id).where(Dataset.project_id == project.id)).all()
        delete_project(session, args.name, force=args.force)
    # Rows are gone (committed); now the per-job and per-dataset folders tunedeck owns.
    for sub, ids in (("jobs", job_ids), ("datasets", dataset_ids)):
        for ident in ids:
            shutil.rmtree(store.home / sub / str(ident), ignore_errors=True)
    print(f"deleted project {args.name}")
    return 0


# --- demo ----------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    from engine.demo_project import ensure_demo_project

    result = ensure_demo_project(_open(args), log=None if args.json else print)
    if args.json:
        _print_json(result)
    return 0


# --- entry point ---------------------------------------------------------------------------


def _launch_tui(args: argparse.Namespace) -> int:
    from tui.app import run_app

    run_app(_open(args))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        func: Callable[[argparse.Namespace], int] = getattr(args, "func", _launch_tui)
        if args.verb is not None and func is _launch_tui:
            raise UsageError(f"tunedeck {args.verb}: missing action (see `tunedeck {args.verb} --help`)")
        return func(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except TunedeckError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if debug:
            traceback.print_exc()
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        if debug:
            traceback.print_exc()
        else:
            print(
                f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr
            )
        return EXIT_ERROR


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
