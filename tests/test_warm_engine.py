"""The warm engine (engine/warm.py), for real: a process that has imported torch, transformers, peft and trl
forks each job's engine; the job runs as a plain engine process would, and is found, killed and reaped the
same way."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from conftest import wait_job
from sqlmodel import select

from engine.launch import runner_env, start_runner
from engine.warm import enabled, run_warm, socket_name, start_warm, warm_dir, warm_key
from store.db import open_store
from store.jobs import create_job, get_job
from store.models import Project
from store.projects import create_project

pytestmark = pytest.mark.skipif(not enabled(dict(os.environ)), reason="warm engines are off where a GPU is visible")


def _queue(home: Path, **config: object) -> int:
    store = open_store(home)
    with store.write() as session:
        project = session.exec(select(Project).where(Project.name == "p")).first() or create_project(session, "p")
        return create_job(session, project.id, "selftest", dict(config), slot="w").id


def _running(home: Path, **config: object) -> tuple[int, int]:
    """Queue a selftest with `config`, start its runner and wait for its first tick: (job id, engine pid)."""
    job_id = _queue(home, **config)
    start_runner(home, "w")
    row = wait_job(home, job_id, lambda r: r["status"] == "running" and r["step"], "the job running")
    return job_id, row["pid"]


def _result(home: Path, job_id: int) -> dict[str, object]:
    with open_store(home).read() as session:
        return dict(get_job(session, job_id).result)


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A warm-engine folder of this module's own, and its warm engine started and ready."""
    folder = tmp_path_factory.mktemp("warm")
    env = {**runner_env(folder), "TUNEDECK_WARM_DIR": str(folder)}  # what a runner's jobs have, as to the key
    pid = start_warm(folder, env, wait_s=300)
    assert pid is not None, (folder / "warm-engine.log").read_text()
    yield folder, pid
    os.kill(pid, signal.SIGTERM)


def test_jobs_of_two_homes_start_as_children_of_one_warm_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                shared: tuple[Path, int]) -> None:
    folder, warm = shared
    monkeypatch.setenv("TUNEDECK_WARM_DIR", str(folder))
    monkeypatch.setenv("TUNEDECK_TEST_MARK", "job-env")  # read at run time: the same warm engine serves it
    for name in ("one", "two"):
        home = tmp_path / name
        started = time.monotonic()
        job_id, pid = _running(home, steps=20, seconds=2.0,
                               report_env=["TUNEDECK_TEST_MARK", "TORCHINDUCTOR_CACHE_DIR"])
        assert _ppid(pid) == warm, "the job's engine is not the warm engine's child"
        assert (Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:8]
                == [os.fsencode(w) for w in (sys.executable, "-m", "engine", "--home", str(home), "job", "--id",
                                             str(job_id))])
        assert Path(f"/proc/{pid}/cwd").resolve() == home.resolve()
        assert os.getsid(pid) == pid, "the job's engine is not in a session of its own"
        done = wait_job(home, job_id)
        assert done["status"] == "completed", done["error"]
        assert time.monotonic() - started < 30
        result = _result(home, job_id)
        assert result["env"] == {"TUNEDECK_TEST_MARK": "job-env",  # the job's environment, not the warm engine's
                                 "TORCHINDUCTOR_CACHE_DIR": runner_env(home)["TORCHINDUCTOR_CACHE_DIR"]}
        log = (home / "jobs" / str(job_id) / "job.log").read_text()
        assert f"job {job_id} (selftest) started, pid {pid}" in log and "selftest done after 20 steps" in log
    assert "ready in" in (folder / "warm-engine.log").read_text()


def test_a_killed_child_is_reaped_and_its_job_interrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          shared: tuple[Path, int]) -> None:
    folder, warm = shared
    monkeypatch.setenv("TUNEDECK_WARM_DIR", str(folder))
    home = tmp_path / "home"
    job_id, pid = _running(home, steps=100, seconds=60.0)
    assert _ppid(pid) == warm
    os.kill(pid, signal.SIGKILL)
    row = wait_job(home, job_id)
    assert row["status"] == "interrupted"
    assert row["error"] == "the engine process ended (killed by signal 9)"  # the runner got the exit status
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists():  # reaped by the warm engine, not left a zombie
        assert time.monotonic() < deadline, "the killed child was never reaped"
        time.sleep(0.05)
    assert Path(f"/proc/{warm}").exists()


def test_what_the_key_covers() -> None:
    base = {"PATH": "/usr/bin", "HF_HOME": "/a", "OMP_NUM_THREADS": "1"}
    key = warm_key(base)
    for name, value in (("HF_HOME", "/b"), ("OMP_NUM_THREADS", "2"), ("PYTHONPATH", "/x"),
                        ("CUDA_VISIBLE_DEVICES", "0")):
        assert warm_key({**base, name: value}) != key, name  # read while the libraries import
    for name in ("TUNEDECK_HOME", "TUNEDECK_WARM_DIR", "XDG_DATA_HOME", "TORCHINDUCTOR_CACHE_DIR", "PWD",
                 "PYTEST_CURRENT_TEST"):
        assert warm_key({**base, name: "/anything"}) == key, name  # read when used: the child's own value
    home = Path("/h")
    assert warm_dir(home, {}) == home / "logs"
    assert warm_dir(home, {"TUNEDECK_WARM_DIR": "/w"}) == Path("/w")
    assert socket_name(Path("/w"), key) != socket_name(Path("/v"), key)
    assert socket_name(Path("/w"), key).startswith("\0tunedeck-warm-")  # abstract: no file, no path limit


def test_switched_off_or_another_command_runs_cold(tmp_path: Path) -> None:
    assert not enabled({"TUNEDECK_WARM_ENGINE": "0"})
    assert enabled({"CUDA_VISIBLE_DEVICES": ""})  # every GPU hidden: CPU work, safe to fork
    argv = [sys.executable, "-m", "engine", "--home", str(tmp_path), "job", "--id", "1"]
    assert run_warm(tmp_path, argv, {"TUNEDECK_WARM_ENGINE": "0"}, 1) is None
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "x", *argv[1:]]
    assert run_warm(tmp_path, accelerate, dict(os.environ), 1) is None
    assert not (tmp_path / "logs").exists()  # nothing was started for either


def test_a_job_outlives_its_warm_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "warm"  # a warm engine of its own: this test kills it
    monkeypatch.setenv("TUNEDECK_WARM_DIR", str(folder))
    home = tmp_path / "home"
    warm = start_warm(home, runner_env(home), wait_s=300)
    assert warm is not None
    job_id, pid = _running(home, steps=30, seconds=3.0)
    assert _ppid(pid) == warm
    os.kill(warm, signal.SIGKILL)
    row = wait_job(home, job_id)
    assert row["status"] == "completed", row["error"]  # the runner waited for the orphan, then found it done
    assert _result(home, job_id)["steps"] == 30


def test_an_environment_seen_once_costs_no_warm_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "warm"
    monkeypatch.setenv("TUNEDECK_WARM_DIR", str(folder))
    monkeypatch.setenv("HF_HUB_ETAG_TIMEOUT", str(tmp_path))  # an environment no other test has: its own key
    home = tmp_path / "home"
    parents = []
    for _ in range(3):
        job_id, pid = _running(home, steps=10, seconds=1.0)
        parents.append(_ppid(pid))
        assert wait_job(home, job_id)["status"] == "completed"
        if len(parents) == 1:
            assert len((folder / "warm-keys").read_text().split()) == 1  # remembered, and nothing started
            assert not (folder / "warm-engine.log").exists()
        elif len(parents) == 2:  # seen before: this cold start also started a warm engine
            warm = start_warm(home, runner_env(home), wait_s=300)  # (waits for its imports; starts nothing)
            assert warm is not None
    assert parents[2] == warm != parents[0]
    os.kill(warm, signal.SIGTERM)
