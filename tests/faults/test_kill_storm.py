"""kill -9 storm: SIGKILL a training run's engine 9 times across its life (while it starts, during a step,
while it writes a checkpoint, while it holds the store's write lock for a metric, while it saves the final
adapter), resume after each kill, and check the store, the checkpoints each resume chose, and that the run
ends exactly where an uninterrupted run with the same seed ends.

Each kill costs an engine start (the model and the trainer: about a second from a warm engine, ~8 s on an
idle core when torch, transformers and trl are imported cold), so the storm aims a few kills at each moment
instead of many at random: 20 kills took ~550 s of the suite before warm engines, these 9 cover the same five
moments."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from conftest import copy_home, run_cli, store_damage, wait_job

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
KILLS = 9
PLANNED_STEPS = 60
SAVE_STEPS = 4
RUN_ARGS = ("--preset", "smoke", "--set", f"max_steps={PLANNED_STEPS}", "--set", f"save_steps={SAVE_STEPS}",
            "--set", "logging_steps=1", "--set", "eval_steps=0")
# Where each of the first KILLS - 1 kills is aimed (shuffled). The last one lands while the final adapter is saved,
# so the last resume starts from the checkpoint at the planned step (PLANNED_STEPS is a multiple of SAVE_STEPS).
PHASES = ["startup"] + ["step"] + ["checkpoint"] * 4 + ["metric"] * 2  # a checkpoint kill can miss its window
# Metrics a resume must reproduce exactly (the others are timings and memory).
DETERMINISTIC = ("loss", "grad_norm", "learning_rate", "epoch", "entropy", "mean_token_accuracy", "num_tokens",
                 "train_loss", "eval_loss")
WAIT_S = 300.0
SQLITE_WAL_WRITE_LOCK = 120  # byte of the -shm file a writer locks for its whole transaction (WAL_WRITE_LOCK)


def _step(checkpoint: str) -> int:
    """The step of a checkpoint's name ("checkpoint-12" -> 12; "" -> 0)."""
    return int(checkpoint.split("-")[1]) if checkpoint else 0


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in {"Z", "X"}


def _kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while _alive(pid):
        assert time.monotonic() < deadline, f"pid {pid} survived SIGKILL"
        time.sleep(0.01)


class Watch:
    """Cheap looks at a run from outside, straight from its files and its store (read-only queries)."""

    def __init__(self, home: Path, job_id: int) -> None:
        self.home, self.job_id = home, job_id
        self.ckpts = home / "jobs" / str(job_id) / "checkpoints"
        self.conn = sqlite3.connect(home / "tunedeck.db", timeout=30, isolation_level=None)

    def job(self) -> tuple[str, int | None]:
        return self.conn.execute("SELECT status, pid FROM jobs WHERE id = ?", (self.job_id,)).fetchone()

    def steps_since(self, t: float) -> int:
        """The highest step whose loss was written after `t` (0 if none)."""
        row = self.conn.execute("SELECT max(step) FROM metrics WHERE job_id = ? AND name = 'loss' AND "
                                "created_at >= ?", (self.job_id, t)).fetchone()
        return row[0] or 0

    def holds_write_lock(self, pid: int) -> bool:
        """Whether `pid` is inside a store write transaction (it holds SQLite's WAL write lock)."""
        try:
            ino = (self.home / "tunedeck.db-shm").stat().st_ino
            locks = Path("/proc/locks").read_text()
        except OSError:
            return False
        needle = re.compile(rf"POSIX\s+ADVISORY\s+WRITE\s+{pid}\s+\S+:{ino}\s+{SQLITE_WAL_WRITE_LOCK}\s")
        return needle.search(locks) is not None

    def engine(self, not_pids: set[int], deadline: float) -> int:
        """The pid of the run's engine once a new one has claimed the job."""
        while True:
            status, pid = self.job()
            if status == "running" and pid and pid not in not_pids and _alive(pid):
                return pid
            assert status in ("queued", "running"), f"the run is {status} while waiting for its engine"
            assert time.monotonic() < deadline, "no engine picked the run up"
            time.sleep(0.05)


def _checkpoint_problems(folder: Path) -> list[str]:
    """What makes a checkpoint unusable for a resume ([] when every file of it loads)."""
    import torch
    from safetensors.torch import load_file

    try:
        state = json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError) as exc:
        return [f"{folder.name}: trainer_state.json: {exc}"]
    problems = []
    if state.get("global_step") != _step(folder.name):
        problems.append(f"{folder.name}: trainer_state.json is at step {state.get('global_step')}")
    try:
        load_file(folder / "adapter_model.safetensors")
        for name in ("optimizer.pt", "scheduler.pt", "rng_state.pth"):
            torch.load(folder / name, weights_only=False)
    except Exception as exc:  # any unreadable file makes the checkpoint torn
        problems.append(f"{folder.name}: {type(exc).__name__}: {exc}")
    return problems


def _resumed_from(log: Path, pid: int) -> str | None:
    """The checkpoint the engine with `pid` said it resumes from ("" for a fresh start, None when it was
    killed before saying)."""
    text = log.read_text(errors="replace")
    start = text.find(f"started, pid {pid}")
    if start < 0:
        return None
    end = text.find("started, pid", start + 1)
    said = re.search(r"precision \w+, \w+(?:; resuming from (checkpoint-\d+))?\n", text[start:end if end > 0 else None])
    return None if said is None else (said.group(1) or "")


def _store_problems(home: Path, run_id: int) -> list[str]:
    """What is wrong with the store as the next reader finds it after a kill ([] when all is well)."""
    shown = run_cli("run", "show", str(run_id), "--json", home=home)  # a reader: reaps what died
    assert shown.returncode == 0, shown.stderr
    problems = store_damage(home)
    if (status := json.loads(shown.stdout)["status"]) != "interrupted":
        problems.insert(0, f"the run is {status} after its engine was killed")
    return problems


def _metrics(home: Path, job_id: int) -> dict[tuple[str, int], float]:
    with sqlite3.connect(home / "tunedeck.db") as conn:
        rows = conn.execute("SELECT name, step, value FROM metrics WHERE job_id = ?", (job_id,)).fetchall()
    return {(name, step): value for name, step, value in rows if name in DETERMINISTIC}


def _wait_done(home: Path, job_id: int) -> dict:
    wait_job(home, job_id, timeout=WAIT_S)
    return json.loads(run_cli("run", "show", str(job_id), "--json", home=home).stdout)


def _being_written(folder: Path, since: float) -> bool:
    """Whether this engine (started after `since`) is writing `folder`: files written, trainer_state.json not yet.
    A folder an earlier kill left torn counts only once this engine writes into it again."""
    try:
        return (not (folder / "trainer_state.json").exists()
                and any(f.stat().st_mtime >= since for f in folder.iterdir()))
    except OSError:  # not there yet
        return False


def _aim(phase: str, watch: Watch, pid: int, since: float, target: int, rng: random.Random) -> str:
    """Wait for the moment `phase` aims at in the engine `pid`, then SIGKILL it; returns where it landed."""
    deadline = time.monotonic() + WAIT_S
    if phase == "startup":  # a warm engine's child starts training within about a second
        time.sleep(rng.uniform(0.05, 0.6))
    elif phase == "finish":
        tmp = watch.ckpts.parent / ".output-tmp"
        while not tmp.exists():
            assert _alive(pid) and time.monotonic() < deadline, "the engine ended before saving its output"
            time.sleep(0.002)
    elif phase == "checkpoint":
        folder = watch.ckpts / f"checkpoint-{target}"
        while not _being_written(folder, since):
            if (folder / "trainer_state.json").exists():
                break  # written between two looks: the kill lands just after it
            assert _alive(pid) and time.monotonic() < deadline, f"the engine ended before checkpoint-{target}"
            time.sleep(0.001)
    else:
        while watch.steps_since(since) < target:
            assert _alive(pid) and time.monotonic() < deadline, f"the engine ended before step {target}"
            time.sleep(0.02)
        if phase == "step":
            time.sleep(rng.uniform(0.0, 0.15))
        else:  # a metric write: the engine inside a store transaction
            give_up = time.monotonic() + 10
            while not (caught := watch.holds_write_lock(pid)) and time.monotonic() < give_up:
                time.sleep(0.0002)  # a busy loop would starve the engine of the core it needs to get there
            phase = "store write" if caught else "step"
    _kill(pid)
    if phase == "checkpoint":
        return "torn checkpoint" if _being_written(watch.ckpts / f"checkpoint-{target}", since) else "step"
    if phase == "startup" and watch.steps_since(since):
        return "step"
    return phase


def test_kill_9_storm_resumes_to_the_uninterrupted_result(tmp_path: Path, fault_summary: list[str],
                                                         demo_home_src: Path) -> None:
    from engine.train.trainer import latest_checkpoint

    storm_home, ref_home = tmp_path / "storm", tmp_path / "reference"
    for home in (storm_home, ref_home):
        copy_home(demo_home_src, home)
    # The uninterrupted reference trains in a home of its own, so its runner works while the storm goes on.
    ref = run_cli("run", "new", "demo", *RUN_ARGS, home=ref_home)
    assert ref.returncode == 0, ref.stderr
    ref_id = int(ref.stdout.strip())
    since = time.time()
    run = run_cli("run", "new", "demo", *RUN_ARGS, home=storm_home)
    assert run.returncode == 0, run.stderr
    run_id = int(run.stdout.strip())
    watch = Watch(storm_home, run_id)
    log = storm_home / "jobs" / str(run_id) / "job.log"

    rng = random.Random(20261201)
    phases = [*rng.sample(PHASES, len(PHASES)), "finish"]
    killed: set[int] = set()
    chose: dict[int, str] = {}  # engine pid -> the newest complete checkpoint when it was started ("" = none)
    expected = ""
    landed: dict[str, int] = {}
    past_torn = 0  # resumes that skipped a torn checkpoint newer than the one they used
    survived = lost = 0
    failures: list[str] = []
    for trial, phase in enumerate(phases):
        pid = watch.engine(killed, time.monotonic() + WAIT_S)
        chose[pid] = expected
        resume_step = _step(expected)
        # Kills spread evenly over the run; each lands past the checkpoint the engine resumed from.
        spread = round((trial + 1) * (PLANNED_STEPS - 2 * SAVE_STEPS) / KILLS)
        target = max(resume_step + 1, spread + rng.randint(-1, 1))
        if phase == "checkpoint":
            target = -(-max(target, resume_step + 1) // SAVE_STEPS) * SAVE_STEPS
        where = _aim(phase, watch, pid, since, target, rng)
        killed.add(pid)
        landed[where] = landed.get(where, 0) + 1

        problems = _store_problems(storm_home, run_id)
        said = _resumed_from(log, pid)
        if said is not None and said != chose[pid]:
            problems.append(f"engine {pid} resumed from {said or 'scratch'}, not {chose[pid] or 'scratch'}")
        folders = sorted(watch.ckpts.glob("checkpoint-*"), key=lambda p: _step(p.name))
        usable = [p.name for p in folders if not _checkpoint_problems(p)]
        pick = latest_checkpoint(watch.ckpts)
        expected = pick.name if pick else ""
        if pick is not None and _checkpoint_problems(pick):
            problems.append(f"resume would use a torn checkpoint: {_checkpoint_problems(pick)}")
        if usable and expected != usable[-1]:
            problems.append(f"resume would use {expected or 'nothing'}, the newest usable is {usable[-1]}")
        torn = [p.name for p in folders if p.name not in usable]
        past_torn += bool(torn) and _step(torn[-1]) > _step(expected)
        if problems:
            lost += 1
            failures.append(f"kill {trial + 1} ({where}): {problems}")
        else:
            survived += 1
        since = time.time()
        resumed = run_cli("run", "resume", str(run_id), home=storm_home)
        assert resumed.returncode == 0, resumed.stderr

    assert expected == f"checkpoint-{PLANNED_STEPS}", expected
    done = _wait_done(storm_home, run_id)
    said = _resumed_from(log, done["pid"])
    if said is not None and said != expected:
        failures.append(f"the last engine resumed from {said or 'scratch'}, not {expected or 'scratch'}")
    reference = _wait_done(ref_home, ref_id)
    fault_summary.append(
        f"kill -9 storm ({KILLS} SIGKILLs of the engine during steps, checkpoint writes and metric writes): "
        f"trials {survived + lost}, survived {survived}, lost {lost} (landed: "
        + ", ".join(f"{n} {k}" for k, n in sorted(landed.items())) + f"; {past_torn} resumes skipped a torn "
        "checkpoint)")
    assert not failures, failures
    assert reference["status"] == "completed", reference["error"]
    assert done["status"] == "completed", done["error"]
    assert done["step"] == PLANNED_STEPS
    assert landed.get("torn checkpoint", 0) >= 1 and past_torn, "no kill landed inside a checkpoint write"

    got, want = _metrics(storm_home, run_id), _metrics(ref_home, ref_id)
    assert sorted(got) == sorted(want), set(got) ^ set(want)
    wrong = [(key, got[key], want[key]) for key in sorted(want)
             if got[key] != pytest.approx(want[key], rel=1e-4, abs=1e-6)]
    assert not wrong, f"{len(wrong)} metric points differ from the uninterrupted run, e.g. {wrong[:5]}"
    with sqlite3.connect(storm_home / "tunedeck.db") as conn:
        artifacts = conn.execute("SELECT path FROM artifacts WHERE job_id = ?", (run_id,)).fetchall()
    assert len(artifacts) == 1, artifacts
    _assert_same_adapter(storm_home / "jobs" / str(run_id) / "output", ref_home / "jobs" / str(ref_id) / "output")
    watch.conn.close()


def _assert_same_adapter(got: Path, want: Path) -> None:
    """The two adapters' weights match tensor by tensor."""
    import torch
    from safetensors.torch import load_file

    a, b = (load_file(folder / "adapter_model.safetensors") for folder in (got, want))
    assert a.keys() == b.keys()
    differ = [name for name in a if not torch.allclose(a[name], b[name], rtol=1e-4, atol=1e-7)]
    assert not differ, differ


def test_resume_skips_torn_checkpoints(tmp_path: Path) -> None:
    """A checkpoint a kill left half-written (no trainer_state.json yet, or one cut short) is never the one
    a resume picks; the newest complete one is."""
    from engine.train.trainer import latest_checkpoint

    def plant(step: int, state: str | None) -> None:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"\0" * 64)
        if state is not None:
            (folder / "trainer_state.json").write_text(state)

    full = json.dumps({"global_step": 8, "log_history": [{"loss": 1.0, "step": 8}]}, indent=2)
    plant(8, full)
    plant(12, None)  # killed before trainer_state.json
    plant(16, "")  # killed between creating trainer_state.json and writing it
    plant(20, full[: len(full) // 2])  # cut short
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-8"
    assert latest_checkpoint(tmp_path / "nothing-yet") is None
