"""Starting a detached runner: its own session (no SIGHUP from a dropped terminal), no stdin,
output to a log under the home. Called by the CLI and the TUI; imports nothing heavy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from store.home import subdir

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def start_runner(home: Path, slot: str) -> int:
    """Spawn `python -m engine runner --slot SLOT`; a no-op in effect if one already serves the slot.

    Returns the spawned process id.
    """
    logs = subdir(home, "logs")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    with (logs / f"runner-{slot}.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "--home", str(home), "runner", "--slot", slot],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, env=env, cwd=str(home),
        )
    return proc.pid
