"""`tunedeck job ...`: every long task (imports, runs, conversions) is a job."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from cli.common import UsageError, open_from_args, print_json, table, when
from core.jobs import (
    FINAL,
    cancel_job,
    cancel_message,
    follow_log,
    job_progress,
    list_jobs,
    move_job,
    read_job,
    watch_job,
)
from core.progress import job_estimator
from store.db import Store

if TYPE_CHECKING:
    from store.models import Job


def register(verbs: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    job = verbs.add_parser("job", help="list, show, follow and cancel jobs (every long task)", parents=[common])
    jverbs = job.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(job))
    p = jverbs.add_parser("list", help="jobs, newest first", parents=[common])
    p.add_argument("project", nargs="?", help="only this project's jobs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_job_list)
    p = jverbs.add_parser("show", help="one job's status, progress and result", parents=[common])
    p.add_argument("id", type=int)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_job_show)
    p = jverbs.add_parser("logs", help="a job's log", parents=[common])
    p.add_argument("id", type=int)
    p.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
    p.set_defaults(func=cmd_job_logs)
    p = jverbs.add_parser("cancel", help="cancel a queued job, or ask a running one to stop", parents=[common])
    p.add_argument("id", type=int)
    p.set_defaults(func=cmd_job_cancel)
    p = jverbs.add_parser("move", help="move a queued job up or down its slot's queue (up: it runs sooner)",
                          parents=[common])
    p.add_argument("id", type=int)
    p.add_argument("direction", choices=("up", "down", "top", "bottom"))
    p.add_argument("places", type=int, nargs="?", default=1, help="how many places (default 1)")
    p.set_defaults(func=cmd_job_move)


PLAIN_EVERY_S = 10.0  # without a terminal, a progress line this often (and at each change of status)


def wait_for_job(store: Store, job_id: int, label: str, show_progress: bool) -> Job:
    """Poll a job until it ends (core.jobs.watch_job). With `show_progress`, its progress on stderr: one line
    rewritten in place on a terminal (step/total, loss, tokens/s, ETA), else a plain line every PLAIN_EVERY_S
    and at each change of status. Ctrl+C stops the waiting, never the job (it runs detached)."""
    import shutil

    stream = sys.stderr
    tty = show_progress and stream.isatty()
    est = job_estimator(None)
    printed_at, printed_status = 0.0, ""
    try:
        for job in watch_job(store, job_id):
            if job.status in FINAL or not show_progress:
                continue
            line = job_progress(store, job, est, label).line()
            if tty:
                width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
                print("\r" + line[:width] + "\x1b[K", end="", file=stream, flush=True)
            elif job.status != printed_status or time.monotonic() - printed_at >= PLAIN_EVERY_S:
                print(line, file=stream, flush=True)
                printed_at, printed_status = time.monotonic(), job.status
    except KeyboardInterrupt:
        print(f"\nstopped waiting; job {job_id} goes on (`tunedeck job show {job_id}`)", file=stream)
        raise
    if tty:
        print("\r\x1b[K", end="", file=stream, flush=True)
    return job


def cmd_job_list(args: argparse.Namespace) -> int:
    jobs = list_jobs(open_from_args(args), args.project)
    if args.json:
        print_json([j.model_dump() for j in jobs])
        return 0
    rows = [(j.id, j.kind, j.status, f"{j.progress * 100:.0f}%", j.name, when(j.updated_at)) for j in jobs]
    print(table(("ID", "KIND", "STATUS", "PROGRESS", "NAME", "UPDATED"), rows) if rows else "no jobs")
    return 0


def cmd_job_show(args: argparse.Namespace) -> int:
    job = read_job(open_from_args(args), args.id)
    if args.json:
        print_json(job.model_dump())
        return 0
    print(f"job {job.id}: {job.kind} {job.name}".rstrip())
    print(f"  status   {job.status}" + (f" ({job.error})" if job.error else ""))
    print(f"  progress {job.progress * 100:.0f}%  step {job.step}" + (f"/{job.total_steps}" if job.total_steps else ""))
    print(f"  created  {when(job.created_at)}  started {when(job.started_at)}  ended {when(job.finished_at)}")
    if job.log_path:
        print(f"  log      {job.log_path}")
    if job.result:
        print(f"  result   {job.result}")
    return 0


def cmd_job_logs(args: argparse.Namespace) -> int:
    for chunk in follow_log(open_from_args(args), args.id, follow=args.follow):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    return 0


def cmd_job_cancel(args: argparse.Namespace) -> int:
    print(cancel_message(args.id, cancel_job(open_from_args(args), args.id)))
    return 0


def cmd_job_move(args: argparse.Namespace) -> int:
    if args.places < 1:
        raise UsageError(f"places must be 1 or more (got {args.places})")
    offset = {"up": -args.places, "down": args.places, "top": -(1 << 30), "bottom": 1 << 30}[args.direction]
    place = move_job(open_from_args(args), args.id, offset)
    print(f"job {args.id} is now #{place + 1} in its queue")
    return 0


def finish_queued(args: argparse.Namespace, store: Store, job_id: int, label: str) -> int:
    """Print the queued job's id, or with --wait wait for it and report; exit status 1 unless it completed."""
    if not args.wait:
        if args.json:
            print_json({"job_id": job_id})
        else:
            print(job_id)
        return 0
    job = wait_for_job(store, job_id, f"{label} {job_id}", show_progress=not args.json)
    if args.json:
        print_json(job.model_dump())
    else:
        print(f"{label} {job_id} {job.status}" + (f": {job.error}" if job.error else ""))
        for key in ("artifact_id", "path", "fidelity"):
            if job.result.get(key) is not None:
                print(f"  {key:<12} {job.result[key]}")
        for q in job.result.get("quants", []):
            print(f"  {q['type']:<12} artifact {q['artifact_id']}  fidelity {q.get('fidelity') or '-'}  {q['path']}")
    return 0 if job.status == "completed" else 1
