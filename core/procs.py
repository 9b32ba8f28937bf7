"""The engine's processes and what they use: CPU (percent of one core) and resident memory, for the GPU
panel on a machine without a GPU.

The processes are each running job's engine (its recorded pid) with its children (a distributed run's
ranks, a converter subprocess), and the runners (their pid is in `locks/runner-<slot>.lock`). Read
through psutil when it is installed, else from /proc; CPU percent is the CPU time used between two
samples over the wall time between them, so the first sample of a process shows none.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

try:  # optional: /proc does the same on Linux
    import psutil
except ImportError:  # pragma: no cover - psutil is in the venv here
    psutil = None


@dataclass(frozen=True)
class ProcSample:
    """One process: its pid, parent, name, CPU time so far (s) and resident memory (bytes)."""

    pid: int
    ppid: int
    name: str
    cpu_s: float
    rss: int


@dataclass(frozen=True)
class EngineProc:
    """A process as the panel lists it: what it is for (a job, a runner, a child) and what it uses now."""

    pid: int
    role: str  # "job 7 train my-run", "runner cpu", or "" for a child of the line above
    name: str
    cpu_pct: float | None
    rss: int
    depth: int  # 0 for a job's engine or a runner, 1+ for its children


def _read_proc(pid: int) -> ProcSample | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    name = stat[stat.index("(") + 1:stat.rindex(")")]
    fields = stat[stat.rindex(")") + 2:].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return ProcSample(pid, int(fields[1]), name, (int(fields[11]) + int(fields[12])) / ticks,
                      int(fields[21]) * os.sysconf("SC_PAGE_SIZE"))  # fmt: skip


def _read_psutil(pid: int) -> ProcSample | None:
    try:
        p = psutil.Process(pid)
        with p.oneshot():
            times = p.cpu_times()
            return ProcSample(pid, p.ppid(), p.name(), times.user + times.system, p.memory_info().rss)
    except (psutil.Error, OSError):
        return None


def read_process(pid: int) -> ProcSample | None:
    """One process's sample, or None when it is gone."""
    return _read_psutil(pid) if psutil is not None else _read_proc(pid)


def children_of(pids: set[int]) -> dict[int, list[int]]:
    """{parent pid: [child pids]} for every descendant of `pids`."""
    tree: dict[int, list[int]] = {}
    if psutil is not None:
        for pid in pids:
            try:
                for child in psutil.Process(pid).children(recursive=True):
                    tree.setdefault(child.ppid(), []).append(child.pid)
            except psutil.Error:
                continue
        return tree
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (sample := _read_proc(int(entry))) is not None:
            parents[sample.pid] = sample.ppid
    wanted, frontier = set(pids), list(pids)
    by_parent: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        by_parent.setdefault(ppid, []).append(pid)
    while frontier:
        pid = frontier.pop()
        for child in sorted(by_parent.get(pid, [])):
            if child not in wanted:
                wanted.add(child)
                tree.setdefault(pid, []).append(child)
                frontier.append(child)
    return tree


def runner_pids(home: Path) -> dict[int, str]:
    """{pid: slot} of the runners whose lock file names a live process."""
    out: dict[int, str] = {}
    for lock in sorted((home / "locks").glob("runner-*.lock")):
        try:
            pid = int(lock.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        if Path(f"/proc/{pid}").exists():
            out[pid] = lock.stem.removeprefix("runner-")
    return out


class ProcSampler:
    """Samples the engine's processes; keeps the last CPU time of each to give CPU percent."""

    def __init__(self, clock: object = time.monotonic) -> None:
        self.clock = clock
        self._last: dict[int, tuple[float, float]] = {}  # pid -> (wall, cpu seconds)

    def sample(self, jobs: dict[int, str], runners: dict[int, str]) -> list[EngineProc]:
        """`jobs`: {engine pid: its label}; `runners`: {runner pid: slot}. Jobs first, each with its children."""
        now = self.clock()  # type: ignore[operator]
        tree = children_of(set(jobs))
        out: list[EngineProc] = []
        seen: dict[int, tuple[float, float]] = {}

        def add(pid: int, role: str, depth: int) -> None:
            sample = read_process(pid)
            if sample is None:
                return
            seen[pid] = (now, sample.cpu_s)
            last = self._last.get(pid)
            pct = None
            if last is not None and now > last[0]:
                pct = max(0.0, (sample.cpu_s - last[1]) / (now - last[0]) * 100)
            out.append(EngineProc(pid, role, sample.name, pct, sample.rss, depth))
            for child in tree.get(pid, []):
                add(child, "", depth + 1)

        for pid, label in sorted(jobs.items(), key=lambda item: item[1]):
            add(pid, label, 0)
        for pid, slot in sorted(runners.items(), key=lambda item: item[1]):
            if pid not in seen:
                add(pid, f"runner {slot}", 0)
        self._last = seen
        return out


def machine_line() -> str:
    """`2 cores · load 1.05 · memory 3.1/7.7 GB used`: the machine the panel runs on."""
    cores = os.cpu_count() or 1
    try:
        load = f"{os.getloadavg()[0]:.2f}"
    except OSError:
        load = "n/a"
    memory = "n/a"
    try:
        info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text()
                .splitlines() if line.split(":")[0] in ("MemTotal", "MemAvailable")}  # fmt: skip
        total, avail = info["MemTotal"], info["MemAvailable"]
        memory = f"{(total - avail) / 1e9:.1f}/{total / 1e9:.1f} GB used"
    except (OSError, KeyError, ValueError, IndexError):
        pass
    return f"{cores} cores · load {load} · memory {memory}"
