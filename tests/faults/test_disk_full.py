"""A disk that fills up under a training run and under a dataset import: on a size-limited tmpfs, with real
engine processes. The job fails saying "disk full while writing PATH", the store stays consistent, nothing
half-written is left and what was written before is intact (conversion: `test_gguf.py`)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import copy_home, run_cli, small_disk, wait_job

pytestmark = pytest.mark.slow
# One checkpoint of the demo LoRA run takes about 310 KB on tmpfs (the optimizer state is half of it): the
# first fits in 480 KB beside the job log, the second does not.
RUN_DISK = "480k"
STEPS, SAVE_EVERY = 40, 10
OUTPUT_DISK = "64k"  # the demo import's log and the run's log fit; the adapter does not
IMPORT_DISK = "1m"  # the small dataset (~50 KB with its scratch copy) fits, the big one (2.2 MB) does not


@pytest.fixture(scope="module")
def trials(fault_summary: list[str]) -> Iterator[dict[str, bool]]:
    """Each test's case, marked survived when all of its checks passed; one summary line for the module."""
    outcomes: dict[str, bool] = {}
    yield outcomes
    survived = sum(outcomes.values())
    fault_summary.append(f"disk full ({', '.join(outcomes)}): trials {len(outcomes)}, survived {survived}, "
                         f"lost {len(outcomes) - survived}")


@pytest.fixture
def trial(request: pytest.FixtureRequest, trials: dict[str, bool]) -> Iterator[None]:
    case = request.node.name.removeprefix("test_disk_full_").replace("_", " ")
    trials[case] = False
    yield
    report = getattr(request.node, "rep_call", None)  # set by conftest's pytest_runtest_makereport
    trials[case] = bool(report and report.passed)


def _integrity(home: Path) -> str:
    with contextlib.closing(sqlite3.connect(home / "tunedeck.db")) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


def _job(home: Path, job_id: int) -> dict:
    proc = run_cli("job", "show", str(job_id), "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _wait_end(home: Path, job_id: int, timeout: float = 300) -> dict:
    wait_job(home, job_id, timeout=timeout)
    return _job(home, job_id)


def _remount(where: Path, size: str) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)


def _snapshot_hash(folder: Path) -> str:
    """The importer's content hash, recomputed from the snapshot's files."""
    digest = hashlib.sha256()
    digest.update((folder / "train.jsonl").read_bytes())
    digest.update(b"\0val\0")
    digest.update((folder / "val.jsonl").read_bytes())
    return digest.hexdigest()


def _datasets(home: Path, project: str) -> list[dict]:
    proc = run_cli("dataset", "list", project, "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    return [d for d in json.loads(proc.stdout) if d["kind"] == "dataset"]  # failed imports are listed too


def _checkpoint_intact(folder: Path, step: int) -> None:
    """Every file of a checkpoint reads back: trainer state, adapter weights, optimizer and scheduler."""
    import torch
    from safetensors.torch import load_file

    assert json.loads((folder / "trainer_state.json").read_text())["global_step"] == step
    assert load_file(folder / "adapter_model.safetensors")
    assert torch.load(folder / "optimizer.pt", weights_only=True)["state"]
    torch.load(folder / "scheduler.pt", weights_only=True)


def test_disk_full_during_a_training_run(home: Path, tmp_path: Path, trial: None, demo_home_src: Path) -> None:
    """The jobs folder (checkpoints and the job log) fills up at the second checkpoint; the store is elsewhere."""
    copy_home(demo_home_src, home)
    jobs = home / "jobs"
    before = tmp_path / "jobs-before"
    shutil.copytree(jobs, before)  # the demo import's log, put back on the small disk
    with small_disk(jobs, RUN_DISK):
        shutil.copytree(before, jobs, dirs_exist_ok=True)
        proc = run_cli("run", "new", "demo", "--preset", "smoke", "--set", f"max_steps={STEPS}",
                       "--set", f"save_steps={SAVE_EVERY}", "--set", "eval_steps=0", "--set", "save_total_limit=5",
                       "--wait", home=home, timeout=300)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        run_id = int(re.search(r"run (\d+) failed", proc.stdout).group(1))
        checkpoints = jobs / str(run_id) / "checkpoints"
        partial = checkpoints / f"checkpoint-{2 * SAVE_EVERY}"
        message = f"disk full while writing {partial} (free space on {checkpoints})"
        assert message in proc.stdout, proc.stdout
        job = _job(home, run_id)
        assert job["status"] == "failed" and job["error"].startswith(message), job["error"]
        assert _integrity(home) == "ok"
        assert sorted(p.name for p in checkpoints.iterdir() if p.is_dir()) == [f"checkpoint-{SAVE_EVERY}"]
        assert not (jobs / str(run_id) / ".output-tmp").exists() and not (jobs / str(run_id) / "output").exists()
        _checkpoint_intact(checkpoints / f"checkpoint-{SAVE_EVERY}", SAVE_EVERY)

        _remount(jobs, "8m")  # space freed: the run resumes from the checkpoint that was kept and finishes
        assert run_cli("run", "resume", str(run_id), home=home).returncode == 0
        job = _wait_end(home, run_id)
        assert job["status"] == "completed", job["error"]
        log = (jobs / str(run_id) / "job.log").read_text()
        assert f"resuming from checkpoint-{SAVE_EVERY}" in log
    with sqlite3.connect(home / "tunedeck.db") as conn:
        steps = [s for (s,) in conn.execute("SELECT step FROM metrics WHERE job_id = ? AND name = 'loss' "
                                            "ORDER BY step", (run_id,))]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert steps == list(range(1, STEPS + 1))


def test_disk_full_while_saving_the_trained_model(home: Path, tmp_path: Path, trial: None,
                                                  demo_home_src: Path) -> None:
    """No checkpoint on the way, and the trained adapter (~75 KB of weights) does not fit beside the log."""
    copy_home(demo_home_src, home)
    jobs = home / "jobs"
    before = tmp_path / "jobs-before"
    shutil.copytree(jobs, before)
    with small_disk(jobs, OUTPUT_DISK):
        shutil.copytree(before, jobs, dirs_exist_ok=True)
        proc = run_cli("run", "new", "demo", "--preset", "smoke", "--set", "max_steps=4", "--set", "save_steps=1000",
                       "--set", "eval_steps=0", "--wait", home=home, timeout=300)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        run_id = int(re.search(r"run (\d+) failed", proc.stdout).group(1))
        folder = jobs / str(run_id)
        job = _job(home, run_id)
        assert job["status"] == "failed", job
        assert job["error"].startswith(f"disk full while writing {folder / 'output'} (free space on {folder})"), job
        assert not (folder / ".output-tmp").exists() and not (folder / "output").exists()
        artifacts = json.loads(run_cli("artifact", "list", "demo", "--json", home=home).stdout)
        assert not [a for a in artifacts if a["kind"] == "adapter"]
        assert _integrity(home) == "ok"


def _import_sources(tmp_path: Path) -> tuple[Path, Path]:
    from engine.demo import write_demo_dataset

    small, big = tmp_path / "small.jsonl", tmp_path / "big.jsonl"
    write_demo_dataset(small, n=200, seed=1)
    write_demo_dataset(big, n=20_000, seed=2)
    return small, big


def _import_fails_on_a_full_disk(home: Path, small: Path, big: Path) -> tuple[dict, dict]:
    """Import `small` (fits), then `big` (does not); returns (the kept dataset, the failed job)."""
    assert run_cli("project", "create", "p", home=home).returncode == 0
    ok = run_cli("dataset", "add", "p", str(small), "--json", home=home, timeout=300)
    assert ok.returncode == 0, ok.stderr
    kept = json.loads(ok.stdout)
    proc = run_cli("dataset", "add", "p", str(big), home=home, timeout=300)
    assert proc.returncode == 1
    assert "disk full while writing" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    failed = json.loads(run_cli("job", "list", "--json", home=home).stdout)[0]
    assert failed["status"] == "failed" and failed["error"].startswith("disk full while writing"), failed
    assert failed["error"] in proc.stderr
    assert _integrity(home) == "ok"
    assert [d["name"] for d in _datasets(home, "p")] == ["small"]  # no row for the failed import
    datasets = home / "datasets"
    assert sorted(p.name for p in datasets.iterdir()) == [str(kept["id"])]  # no half-written snapshot
    assert _snapshot_hash(Path(kept["path"])) == kept["content_hash"]  # the earlier snapshot is intact
    return kept, failed


def test_disk_full_during_a_dataset_import(home: Path, tmp_path: Path, trial: None) -> None:
    """The datasets folder fills up; the store and the job logs are on another disk."""
    small, big = _import_sources(tmp_path)
    datasets = home / "datasets"
    with small_disk(datasets, IMPORT_DISK):
        _, failed = _import_fails_on_a_full_disk(home, small, big)
        snapshot = datasets / f".tmp-job{failed['id']}"
        assert failed["error"] == f"disk full while writing {snapshot} (free space on {datasets}); nothing was kept"
        _remount(datasets, "16m")
        again = run_cli("dataset", "add", "p", str(big), home=home, timeout=300)
        assert again.returncode == 0, again.stderr
        assert sorted(d["name"] for d in _datasets(home, "p")) == ["big", "small"]


def test_disk_full_with_the_store_on_it(home: Path, tmp_path: Path, trial: None) -> None:
    """The whole home, database included, on the disk that fills up: the import fails the same way, and a
    disk too full for SQLite to open the store is said to be full (not "not a tunedeck database")."""
    small, big = _import_sources(tmp_path)
    with small_disk(home, IMPORT_DISK):
        _, failed = _import_fails_on_a_full_disk(home, small, big)
        ballast = home / "ballast"

        def fill() -> None:
            subprocess.run(["dd", "if=/dev/zero", f"of={ballast}", "bs=4k"], capture_output=True)
            assert shutil.disk_usage(home).free < 4096

        deadline = time.monotonic() + 30
        while (home / "tunedeck.db-shm").exists():  # until nothing has the store open (the runner exits)
            assert time.monotonic() < deadline, "the store stays open"
            time.sleep(0.2)
        fill()
        shm = f"error: disk full while writing {home / 'tunedeck.db-shm'} (free space on {home})"
        for args in (("job", "list"), ("project", "create", "q")):
            proc = run_cli(*args, home=home)
            assert proc.returncode == 1 and shm in proc.stderr, (args, proc.stderr)
        ballast.unlink()
        with contextlib.closing(sqlite3.connect(home / "tunedeck.db")) as holder:  # the store open (a TUI)
            holder.execute("SELECT count(*) FROM jobs").fetchone()
            fill()
            proc = run_cli("project", "create", "q", "--description", "x" * 50_000, home=home)
            assert proc.returncode == 1, proc.stderr
            assert f"error: disk full while writing {home / 'tunedeck.db'} (free space on {home})" in proc.stderr
            ballast.unlink()
        jobs = json.loads(run_cli("job", "list", "--json", home=home).stdout)
        assert jobs[0]["id"] == failed["id"] and jobs[0]["error"] == failed["error"]
        assert [p["name"] for p in json.loads(run_cli("project", "list", "--json", home=home).stdout)] == ["p"]
        assert _integrity(home) == "ok"
