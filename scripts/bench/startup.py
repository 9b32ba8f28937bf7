"""Time to the first rendered frame: tunedeck on a big store vs a bare Textual app.

Fills a fresh home with 10,000 jobs and 1,000,000 metric points, then starts each app
in a pseudo-terminal (80x24) several times, alternating, and measures from spawn to the
moment a marker of its first frame appears on the terminal. Both include interpreter
start-up and imports, as a user sees them. Prints medians and the ratio (goal <= 1.5).

    .venv/bin/python scripts/bench/startup.py [--runs 7] [--jobs 10000] [--metrics 1000000]
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import signal
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

BARE_APP = '''
from textual.app import App
from textual.widgets import Footer, Header, Static

class Bare(App):
    def compose(self):
        yield Header()
        yield Static("bare-app-ready")
        yield Footer()

Bare().run()
'''
ANSI = re.compile(rb"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][A-Za-z0-9]|[=>NOPMc78])")


def fill_store(home: Path, n_jobs: int, n_metrics: int, n_projects: int = 20) -> str:
    """Create the schema with tunedeck's own code, then bulk-insert rows; returns a marker name."""
    from store.db import open_store

    open_store(home).close()
    now = time.time()
    conn = sqlite3.connect(home / "tunedeck.db")
    with conn:
        conn.executemany(
            "INSERT INTO projects (name, description, created_at, updated_at) VALUES (?, ?, ?, ?)",
            [(f"bench-{p:02d}", "benchmark", now - p, now - p) for p in range(n_projects)],
        )
        conn.executemany(
            "INSERT INTO jobs (project_id, kind, status, config, created_at, updated_at, step, total_steps)"
            " VALUES (?, 'train', 'completed', '{}', ?, ?, 100, 100)",
            [(1 + j % n_projects, now - j, now - j) for j in range(n_jobs)],
        )
        per_job = max(1, n_metrics // n_jobs)
        conn.executemany(
            "INSERT INTO metrics (job_id, step, name, value, created_at) VALUES (?, ?, 'loss', ?, ?)",
            ((1 + i // per_job, i % per_job, 1.0 / (1 + i % per_job), now) for i in range(n_metrics)),
        )
    counts = conn.execute("SELECT (SELECT count(*) FROM jobs), (SELECT count(*) FROM metrics)").fetchone()
    conn.close()
    print(f"store: {counts[0]:,} jobs, {counts[1]:,} metric points, "
          f"{(home / 'tunedeck.db').stat().st_size / 1e6:.0f} MB")
    return "bench-00"


def time_to_marker(cmd: list[str], marker: bytes, env: dict[str, str], timeout: float = 60.0) -> float:
    """Seconds from spawning `cmd` on an 80x24 pty until `marker` shows in its output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=ROOT,
                            start_new_session=True)
    os.close(slave)
    seen = b""
    try:
        while time.perf_counter() - start < timeout:
            ready, _, _ = select.select([master], [], [], 0.05)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            seen += chunk
            if marker in ANSI.sub(b"", seen):
                return time.perf_counter() - start
        raise RuntimeError(f"{cmd} never showed {marker!r}; last output: {ANSI.sub(b'', seen)[-300:]!r}")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)
        os.close(master)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--metrics", type=int, default=1_000_000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        marker = fill_store(home, args.jobs, args.metrics).encode()
        bare = Path(tmp) / "bare_app.py"
        bare.write_text(BARE_APP)
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24", "TUNEDECK_HOME": str(home)}
        tunedeck_cmd = [sys.executable, "-m", "cli"]
        bare_cmd = [sys.executable, str(bare)]
        # one warm-up each so both read their modules from the page cache
        time_to_marker(bare_cmd, b"bare-app-ready", env)
        time_to_marker(tunedeck_cmd, marker, env)
        bare_times, tunedeck_times = [], []
        for _ in range(args.runs):
            bare_times.append(time_to_marker(bare_cmd, b"bare-app-ready", env))
            tunedeck_times.append(time_to_marker(tunedeck_cmd, marker, env))
    b, t = statistics.median(bare_times), statistics.median(tunedeck_times)
    print(f"bare textual app : median {b * 1000:7.0f} ms  ({', '.join(f'{x * 1000:.0f}' for x in bare_times)})")
    print(f"tunedeck         : median {t * 1000:7.0f} ms  ({', '.join(f'{x * 1000:.0f}' for x in tunedeck_times)})")
    print(f"ratio tunedeck / bare = {t / b:.2f} (goal <= 1.5)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
