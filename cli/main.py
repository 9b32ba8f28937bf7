"""The `tunedeck` command line: no verb opens the TUI; verbs do what the screens do.

Errors go to stderr as one line with a non-zero exit code; `--debug` adds the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence

from cli import artifact, chat, compress, dataset, gpu, job, merge, model, project, run
from cli.common import UsageError, open_from_args
from store.errors import TunedeckError

EXIT_ERROR = 1
EXIT_USAGE = 2


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

    for module in (project, dataset, model, run, job, artifact, compress, merge, chat, gpu):
        module.register(verbs, common)
    return parser


# --- entry point ---------------------------------------------------------------------------


def _launch_tui(args: argparse.Namespace) -> int:
    from tui.app import run_app

    run_app(open_from_args(args))
    return 0


@contextlib.contextmanager
def _library_caches_in_home(args: argparse.Namespace) -> Iterator[None]:
    """The compilers' caches under the home while a command runs: this process builds models too (`model
    modules`, `estimate`, the TUI), and the runners it starts inherit them. Undone after, for in-process callers."""
    from engine.launch import library_cache_env
    from store.home import resolve_home

    added = {k: v for k, v in library_cache_env(resolve_home(getattr(args, "home", None))).items()
             if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for var in added:
            os.environ.pop(var, None)


def _printable(text: str) -> str:
    """`text` with control characters (say an ESC in a name the user typed) escaped, so an error message cannot
    drive the terminal; the line breaks of a multi-line message stay."""
    return "".join(ch if ch == "\n" or ch.isprintable() else repr(ch)[1:-1] for ch in text)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (the console script exits with it)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        args = build_parser().parse_args(argv)
        func: Callable[[argparse.Namespace], int] = getattr(args, "func", _launch_tui)
        if args.verb is not None and func is _launch_tui:
            raise UsageError(f"tunedeck {args.verb}: missing action (see `tunedeck {args.verb} --help`)")
        with _library_caches_in_home(args):
            return func(args)
    except UsageError as exc:
        print(f"error: {_printable(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except TunedeckError as exc:
        if debug:
            traceback.print_exc()
        print(f"error: {_printable(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:  # `tunedeck ... | head`: the reader left; nothing to report
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if debug:
            traceback.print_exc()
        where = f" ({exc.filename})" if exc.filename else ""
        print(_printable(f"error: {exc.strerror or exc}{where}"), file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        if debug:
            traceback.print_exc()
        else:
            print(
                _printable(f"error: unexpected {type(exc).__name__}: {exc} (run with --debug for the traceback)"),
                file=sys.stderr,
            )
        return EXIT_ERROR


def entry() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    entry()
