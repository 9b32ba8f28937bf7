"""`python -m engine`: the detached side of tunedeck (runners and jobs)."""

from __future__ import annotations

import argparse
import os
import signal
import sys

from store.db import open_store
from store.errors import IllegalTransition


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine")
    parser.add_argument("--home", required=True)
    verbs = parser.add_subparsers(dest="verb", required=True)
    runner = verbs.add_parser("runner", help="run a slot's queued jobs in order, then exit")
    runner.add_argument("--slot", default="cpu")
    job = verbs.add_parser("job", help="run one queued job in this process")
    job.add_argument("--id", type=int, required=True)
    args = parser.parse_args(argv)

    # A dropped SSH session must never stop work (we also run in our own session).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    store = open_store(args.home)
    if args.verb == "runner":
        from engine.runner import run_slot

        run_slot(store, args.slot)
        return 0
    from engine.jobrun import execute_job
    from engine.quiet import quiet_library_output

    quiet_library_output()
    try:
        status = execute_job(store, args.id, os.getpid())
    except IllegalTransition as exc:
        print(f"not running job {args.id}: {exc}", file=sys.stderr)
        return 3
    # A cancelled job ended as asked: exit 0, so a distributed launcher does not report the ranks as crashed.
    return 0 if status.value in ("completed", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main())
