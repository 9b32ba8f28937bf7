"""Shared fixtures: a fresh home and store per test, and the demo model built once per session."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]

# huggingface_hub reads HF_HUB_OFFLINE once, when first imported, and test modules import it (through
# transformers) at collection, before any fixture runs: set here, or in-process hub calls wait on the network.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
# One OpenMP/BLAS thread per process (torch reads this at import; the engines the tests start inherit it). The
# tests' models are tiny, so a second thread buys nothing alone (demo LoRA, 40 steps: 12.6 s with 2 threads,
# 13.0 s with 1), while two processes of 2 threads each on 2 cores spin against each other: two such runs at once
# took 24 s each, with 1 thread 11-12 s each. The suite runs engines side by side (xdist workers, runners).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads or writes the real user's data or reaches a hub."""
    monkeypatch.delenv("TUNEDECK_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A tunedeck home that does not exist yet."""
    return tmp_path / "home"


@pytest.fixture
def store(home: Path):
    """An opened store in a fresh home."""
    from store.db import open_store

    s = open_store(home)
    yield s
    s.close()


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny demo Llama, built once per test session (read-only for tests)."""
    from engine.demo_project import install_demo_model

    return built_once(tmp_path_factory, "demo", lambda folder: install_demo_model(folder / "demo-llama"))


@pytest.fixture(scope="session")
def demo_home_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home after `tunedeck demo` (model, dataset imported), made once per session. Read-only: a test or
    module that writes gets its own with `copy_home(demo_home_src, dest)`."""
    def build(folder: Path) -> Path:
        home = folder / "home"
        result = run_cli("demo", "--json", home=home, timeout=600)
        assert result.returncode == 0, result.stderr
        _quiesce(home)
        return home

    return built_once(tmp_path_factory, "demo-home", build)


@pytest.fixture(scope="session")
def trained_home_src(demo_home_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo home with two completed smoke runs (jobs 2 and 3: 4 steps each, checkpoints at 2 and 4, an
    adapter each), made once per session. Read-only: copy it with `copy_home` to write."""
    import json

    def build(folder: Path) -> Path:
        home = copy_home(demo_home_src, folder / "home")
        for _ in range(2):
            result = run_cli("run", "new", "demo", "--preset", "smoke", "--set", "max_steps=4", "--set",
                             "save_steps=2", "--set", "eval_steps=0", "--wait", "--json", home=home, timeout=600)
            assert json.loads(result.stdout)["status"] == "completed", result.stdout + result.stderr
        _quiesce(home)
        return home

    return built_once(tmp_path_factory, "trained-home", build)


# Test files that take longest, started first so that no long file starts last on an otherwise idle worker
# (make test runs xdist with --dist loadfile --no-loadscope-reorder: files go to workers in collection order).
LONGEST_FIRST = ("test_smollm2_pipeline.py", "test_train_objectives.py", "test_train.py", "test_evaluate.py",
                 "test_kill_storm.py", "test_power_loss.py", "test_slurm.py", "test_contention.py",
                 "test_distributed.py", "test_pipeline.py", "test_disk_full.py", "test_models.py", "test_tui_runs.py",
                 "test_outside_home.py", "test_dataset_import.py", "test_compress.py", "test_hangup.py",
                 "test_gguf.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]) -> Path:
    """What `build(folder)` makes, made once per test run. Under pytest-xdist (`make test` runs the suite on
    several workers) the first worker to ask builds it in the run's shared temp folder, under a file lock, and
    the others wait for it and reuse it; a build that failed is started over by the next one to ask."""
    import shutil

    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp(name))
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / "shared"  # every worker's basetemp sits in one run folder
    shared.mkdir(exist_ok=True)
    done = shared / f"{name}.done"
    with FileLock(str(shared / f"{name}.lock")):
        if done.is_file():
            return Path(done.read_text())
        folder = shared / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        result = build(folder)
        done.write_text(str(result))
        return result


def _quiesce(home: Path, timeout: float = 60) -> None:
    """Wait until no engine process of `home` is left (its runner exits once the queue is empty), so that the
    home's files hold still for a copy."""
    import time

    deadline = time.monotonic() + timeout
    while processes_with("engine", str(home)):
        assert time.monotonic() < deadline, f"engine processes of {home} did not exit"
        time.sleep(0.1)


def copy_home(src: Path, dest: Path) -> Path:
    """A writable copy of the home `src` at `dest` (far cheaper than `tunedeck demo` or a training): its files,
    with every absolute path into `src` in the store and in the JSON files under it pointed at `dest`, so
    nothing the copy does touches `src`. `src` must be idle (no engine running in it)."""
    import shutil
    import sqlite3

    shutil.copytree(src, dest, symlinks=True)
    old, new = str(src), str(dest)
    with sqlite3.connect(dest / "tunedeck.db") as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                                             "AND name NOT LIKE 'sqlite_%'")]
        for table in tables:
            for column in [c[1] for c in conn.execute(f'PRAGMA table_info("{table}")')]:
                for a, b in ((old + "/", new + "/"), (old + '"', new + '"')):
                    conn.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                                 f'WHERE typeof("{column}") = \'text\' AND instr("{column}", ?) > 0', (a, b, a))
                conn.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE "{column}" = ?', (new, old))
    conn.close()
    for path in dest.rglob("*.json"):
        if path.is_file() and not path.is_symlink() and old in (text := path.read_text(errors="replace")):
            path.write_text(text.replace(old + "/", new + "/").replace(old + '"', new + '"'))
    return dest


def run_cli(*args: str, home: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120):
    """Run `python -m cli ARGS` in a subprocess; returns the CompletedProcess."""
    import subprocess

    full_env = {**os.environ, **(env or {})}
    cmd = [sys.executable, "-m", "cli"]
    if home is not None:
        cmd += ["--home", str(home)]
    proc = subprocess.run(
        [*cmd, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL
    )
    if log := os.environ.get("TUNEDECK_TEST_CLI_LOG"):  # which tests start how many CLI processes (suite tuning)
        with open(log, "a") as f:
            f.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?').split(' ')[0]}\t{' '.join(args[:2])}\n")
    return proc


def job_row(home: Path, job_id: int) -> dict[str, Any]:
    """A job's status, step, pid, error and slot read straight from the home's store. For progress polls: a CLI call
    per poll starts a Python process (~1 s of CPU under load), which slows the very run the test watches and lets
    it run past the step the test aims at. Reads only; a CLI reader also reaps dead jobs, this does not."""
    import sqlite3

    conn = sqlite3.connect(home / "tunedeck.db", timeout=30)
    try:
        row = conn.execute("SELECT status, step, pid, error, slot FROM jobs WHERE id = ?", (job_id,)).fetchone()
    finally:
        conn.close()
    assert row is not None, f"no job {job_id} in {home}"
    return dict(zip(("status", "step", "pid", "error", "slot"), row, strict=True))


def ended(row: dict[str, Any]) -> bool:
    """Whether a job row (job_row) is past queued and running."""
    return row["status"] not in ("queued", "running")


@contextmanager
def held_slot(home: Path, slot: str, timeout: float = 60) -> Iterator[None]:
    """Keep `slot`'s queue of `home` still inside the block (its runner lock held: a runner started meanwhile exits
    at once), then start its runner. For tests that must see a job queued, which a warm engine would finish
    between two looks."""
    import time

    from engine.launch import start_runner
    from engine.runner import SlotLock

    lock = SlotLock(home, slot)
    deadline = time.monotonic() + timeout
    while not lock.acquire():
        assert time.monotonic() < deadline, f"a runner still holds the {slot} slot of {home}"
        time.sleep(0.1)
    try:
        yield
    finally:
        lock.release()
    start_runner(home, slot)


def _reap(home: Path) -> None:
    from core.jobs import reap_stale_jobs
    from store.db import open_store

    store = open_store(home)
    try:
        reap_stale_jobs(store)
    finally:
        store.close()


def wait_job(home: Path, job_id: int, done: Callable[[dict[str, Any]], bool] = ended, what: str = "did not end",
             timeout: float = 300, every: float = 0.2) -> dict[str, Any]:
    """Poll the job's row (job_row) until `done(row)`; returns that row. Every ~5 s it also does what every reader
    (the CLI, the TUI) does first, in this process: mark a job whose processes all died interrupted."""
    import time

    deadline = time.monotonic() + timeout
    next_reader = time.monotonic() + 5
    while not done(row := job_row(home, job_id)):
        assert time.monotonic() < deadline, f"job {job_id} {what}: {row['status']} at step {row['step']}"
        if time.monotonic() >= next_reader:
            _reap(home)
            next_reader = time.monotonic() + 5
        time.sleep(every)
    return row


@pytest.fixture(scope="session")
def llama_sdist() -> Path:
    """The llama-cpp-python sdist of the installed version (llama.cpp's converter), downloaded once and kept
    in the user's cache so later test sessions work offline."""
    from engine.gguf.tools import SDIST_ENV, _download_sdist, llama_cpp_version

    given = os.environ.get(SDIST_ENV)
    if given and Path(given).is_file():
        return Path(given)
    version = llama_cpp_version()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tunedeck-tests"
    cached = cache / f"llama_cpp_python-{version}.tar.gz"
    if not cached.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".download-{os.getpid()}"
        tmp.mkdir(exist_ok=True)
        os.replace(_download_sdist(version, tmp), cached)
        tmp.rmdir()
    return cached


@pytest.fixture
def gguf_tools_env(monkeypatch: pytest.MonkeyPatch, llama_sdist: Path) -> Path:
    """Point TUNEDECK_LLAMA_SDIST at the cached sdist (for this process and the engines it starts)."""
    from engine.gguf.tools import SDIST_ENV

    monkeypatch.setenv(SDIST_ENV, str(llama_sdist))
    return llama_sdist


@pytest.fixture(scope="session")
def demo_gguf(tmp_path_factory: pytest.TempPathFactory, demo_model_dir: Path, llama_sdist: Path) -> Path:
    """The demo model converted to an f16 GGUF by llama.cpp's converter (read-only for tests)."""
    from engine.gguf.convert import convert_model
    from engine.gguf.tools import unpack_sdist

    def build(folder: Path) -> Path:
        tools = unpack_sdist(llama_sdist, folder / "tools")
        return convert_model(tools, demo_model_dir, folder / "demo-llama-f16.gguf", "f16")

    return built_once(tmp_path_factory, "demo-gguf", build)


def mount_tmpfs(where: Path, size: str) -> bool:
    """Mount a tmpfs of `size` (e.g. "100k") at `where`; False when this process may not mount (not root)."""
    import subprocess

    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True, text=True)
    return proc.returncode == 0


@contextmanager
def small_disk(where: Path, size: str) -> Iterator[Path]:
    """A size-limited filesystem at `where` for the block (skips the test where mounting is not allowed);
    unmounted afterwards, lazily if a process still holds a file there."""
    import subprocess

    if not mount_tmpfs(where, size):
        pytest.skip("cannot mount a size-limited tmpfs here (needs root / CAP_SYS_ADMIN)")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True)


FAULT_LINES_ENV = "TUNEDECK_TEST_FAULT_LINES"


class _FaultLines(list[str]):
    """The fault classes' summary lines. An xdist worker also writes each to a file of its own in the folder
    the controlling process named, which prints them all at the end."""

    def append(self, line: str) -> None:
        super().append(line)
        folder, worker = os.environ.get(FAULT_LINES_ENV), os.environ.get("PYTEST_XDIST_WORKER")
        if folder and worker:
            with open(Path(folder) / f"{worker}.txt", "a") as out:
                out.write(line + "\n")


FAULT_SUMMARY = _FaultLines()


WARM_DIR_ENV = "TUNEDECK_WARM_DIR"
_OWN_WARM_DIR = pytest.StashKey[bool]()


def pytest_configure(config: pytest.Config) -> None:
    if not hasattr(config, "workerinput"):  # the controlling process (or a run without xdist)
        import tempfile

        os.environ[FAULT_LINES_ENV] = tempfile.mkdtemp(prefix="tunedeck-fault-lines-")
        # One warm engine (engine/warm.py) for the whole run, shared by every test's home, as for a user's one
        # home: each job's start then costs a fork instead of importing torch, transformers, peft and trl.
        if not os.environ.get(WARM_DIR_ENV):  # one given is kept, with its warm engines' logs
            os.environ[WARM_DIR_ENV] = tempfile.mkdtemp(prefix="tunedeck-warm-")
            config.stash[_OWN_WARM_DIR] = True
        from engine.launch import runner_env
        from engine.warm import start_warm

        folder = Path(os.environ[WARM_DIR_ENV])
        start_warm(folder, runner_env(folder), wait_s=0)  # importing while the workers start: every job warm


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil
    import signal

    folder = os.environ.get(WARM_DIR_ENV)
    if hasattr(config, "workerinput") or not folder or not config.stash.get(_OWN_WARM_DIR, False):
        return
    for pid in warm_engines(WARM_DIR_ENV, folder):  # they would exit after their idle time anyway
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    shutil.rmtree(folder, ignore_errors=True)


def warm_engines(name: str, value: str) -> list[int]:
    """The warm engines (engine/warm.py) started with the environment variable `name` set to `value`."""
    wanted = f"{name}={value}".encode()
    found = []
    for pid in processes_with("engine.warm"):
        with contextlib.suppress(OSError):
            if wanted in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                found.append(pid)
    return found


@pytest.fixture(scope="session")
def fault_summary() -> list[str]:
    """Fault tests append one line per fault class (trials, survived, lost); printed at the end of the run."""
    return FAULT_SUMMARY


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    import shutil

    if hasattr(terminalreporter.config, "workerinput"):  # an xdist worker: the controlling process prints them
        return
    lines = list(FAULT_SUMMARY)
    if folder := os.environ.get(FAULT_LINES_ENV):
        for part in sorted(Path(folder).glob("*.txt")):
            lines += part.read_text().splitlines()
        shutil.rmtree(folder, ignore_errors=True)
    if lines:
        terminalreporter.section("fault classes")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Any:
    """Keep each phase's report on the test item (`item.rep_call`), so a fixture's teardown can tell whether its
    test passed (the fault tests count survived and lost trials that way)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def processes_with(*words: str) -> list[int]:
    """Live (not zombie) processes whose argv holds every one of `words`, e.g. ("engine", str(home))."""
    wanted = [w.encode() for w in words]
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and all(w in argv for w in wanted):
            found.append(int(proc.name))
    return found


def store_damage(home: Path) -> list[str]:
    """What is wrong with a home's database on disk ([] when all is well): integrity_check, and metrics
    recorded twice for one (job, step, name)."""
    import sqlite3

    problems = []
    with sqlite3.connect(home / "tunedeck.db") as conn:
        if (check := conn.execute("PRAGMA integrity_check").fetchone()[0]) != "ok":
            problems.append(f"integrity_check: {check}")
        dups = conn.execute("SELECT job_id, step, name, count(*) FROM metrics GROUP BY job_id, step, name "
                            "HAVING count(*) > 1").fetchall()
        if dups:
            problems.append(f"duplicate metrics {dups[:3]}")
    return problems
