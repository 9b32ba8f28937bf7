"""Starting a detached runner: its own session (no SIGHUP from a dropped terminal), no stdin,
output to a log under the home. Called by the CLI and the TUI; imports nothing heavy."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from store.home import subdir

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


def library_cache_env(home: Path) -> dict[str, str]:
    """Where the compilers' caches go (torch.compile's, which building any model touches, and Triton's): under
    the home, not into $TMPDIR or ~, since tunedeck writes nowhere the user did not name. Callers set them only
    when unset, so a cache the user placed stays where they put it."""
    return {"TORCHINDUCTOR_CACHE_DIR": str(home / "cache" / "torchinductor"),
            "TRITON_CACHE_DIR": str(home / "cache" / "triton")}


def runner_env(home: Path) -> dict[str, str]:
    """The environment of a runner for `home` started from this process (its jobs inherit it)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    for var, path in library_cache_env(home).items():
        env.setdefault(var, path)
    return env


def start_runner(home: Path, slot: str) -> int:
    """Spawn `python -m engine runner --slot SLOT`; a no-op in effect if one already serves the slot.

    Returns the spawned process id.
    """
    logs = subdir(home, "logs")
    env = runner_env(home)
    with (logs / f"runner-{slot}.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine", "--home", str(home), "runner", "--slot", slot],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, close_fds=True, env=env, cwd=str(home),
        )
    return proc.pid
