"""Deleting runs and projects and pruning checkpoints: rows and files go together, and no folder is left under an
id SQLite may hand out again (a new run would resume from its checkpoints)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from conftest import copy_home, run_cli

from engine.artifacts import register_artifact
from store.db import open_store
from store.jobs import create_job


@pytest.fixture(scope="module")
def trained(trained_home_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo home with two completed smoke runs (2 and 3), each with checkpoints and an adapter: a copy of the
    session's trained home, since these tests delete from it."""
    return copy_home(trained_home_src, tmp_path_factory.mktemp("cleanup") / "home")


def _count(home: Path, sql: str, *args: object) -> int:
    with sqlite3.connect(home / "tunedeck.db") as conn:
        return conn.execute(sql, args).fetchone()[0]


def test_prune_removes_completed_runs_checkpoints_and_keeps_their_outputs(trained: Path) -> None:
    assert len(list((trained / "jobs" / "2" / "checkpoints").glob("checkpoint-*"))) == 2
    result = run_cli("run", "prune", "demo", "--json", home=trained)
    pruned = {row["id"]: row for row in json.loads(result.stdout)}
    assert set(pruned) == {2, 3} and pruned[2]["checkpoints"] == 2 and pruned[2]["freed_bytes"] > 0
    for job in ("2", "3"):
        assert not list((trained / "jobs" / job / "checkpoints").glob("checkpoint-*"))
        assert (trained / "jobs" / job / "output" / "adapter_model.safetensors").is_file()
    assert not any((trained / "trash").iterdir())
    again = run_cli("run", "prune", home=trained)
    assert again.returncode == 0 and "no completed run has checkpoints left" in again.stdout


def test_delete_refuses_active_runs_and_runs_with_artifacts_unless_forced(trained: Path) -> None:
    store = open_store(trained)
    with store.write() as session:
        queued = int(create_job(session, 1, "train", {"run": {}}, slot="nowhere").id)  # type: ignore[arg-type]
    store.close()
    refused = run_cli("run", "delete", str(queued), home=trained)
    assert refused.returncode == 1 and refused.stderr.strip() == (
        f"error: run {queued} is queued; cancel it first (tunedeck run cancel {queued})")
    assert run_cli("run", "cancel", str(queued), home=trained).returncode == 0
    gone = run_cli("run", "delete", str(queued), home=trained)  # ended, no artifacts: no --force needed
    assert gone.returncode == 0 and f"deleted run {queued}" in gone.stdout, gone.stderr
    assert _count(trained, "SELECT count(*) FROM jobs WHERE id = ?", queued) == 0

    refused = run_cli("run", "delete", "2", home=trained)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "run 2 made artifact(s) " in refused.stderr and "(adapter run2-adapter)" in refused.stderr
    assert "pass --force" in refused.stderr
    assert (trained / "jobs" / "2" / "job.log").is_file()
    assert _count(trained, "SELECT count(*) FROM metrics WHERE job_id = 2") > 0

    not_a_run = run_cli("run", "delete", "1", home=trained)  # the dataset import
    assert not_a_run.returncode == 1 and "job 1 is a dataset-import job, not a training run" in not_a_run.stderr


def test_forced_delete_takes_the_run_its_artifacts_and_what_derives_from_them(trained: Path, tmp_path: Path) -> None:
    adapter = _count(trained, "SELECT id FROM artifacts WHERE job_id = 3")
    derived = trained / "models" / "derived-from-run3"
    derived.mkdir(parents=True)
    (derived / "config.json").write_text("{}")
    outside = tmp_path / "user-export.gguf"
    outside.write_bytes(b"GGUF")
    store = open_store(trained)
    with store.write() as session:
        inner = register_artifact(session, 1, "model", derived, name="derived", parent_id=adapter).id
        outer = register_artifact(session, 1, "gguf", outside, name="exported", parent_id=inner).id
    store.close()

    result = run_cli("run", "delete", "3", "--force", "--json", home=trained)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert {a["id"] for a in report["artifacts"]} == {adapter, inner, outer} and report["freed_bytes"] > 0
    assert report["kept"] == [str(outside)] and outside.is_file()  # the user's own path is left alone
    assert not (trained / "jobs" / "3").exists() and not derived.exists()
    assert not any((trained / "trash").iterdir())
    assert _count(trained, "SELECT count(*) FROM metrics WHERE job_id = 3") == 0
    assert _count(trained, "SELECT count(*) FROM jobs WHERE id = 3") == 0
    with sqlite3.connect(trained / "tunedeck.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []

    # SQLite hands the deleted newest id out again; the new run starts with no folder, so no stale checkpoint.
    store = open_store(trained)
    with store.write() as session:
        again = int(create_job(session, 1, "train", {}, slot="nowhere").id)  # type: ignore[arg-type]
    store.close()
    assert again == 3 and not (trained / "jobs" / "3").exists()
    assert run_cli("run", "cancel", "3", home=trained).returncode == 0


def test_a_delete_that_cannot_move_the_files_changes_nothing(trained: Path) -> None:
    """The folder is moved aside inside the transaction: when that fails, the rows stay and so do the files."""
    (trained / "trash").rmdir()
    (trained / "trash").write_text("in the way")  # the trash cannot be made
    try:
        result = run_cli("run", "delete", "2", "--force", home=trained)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert _count(trained, "SELECT count(*) FROM jobs WHERE id = 2") == 1
        assert _count(trained, "SELECT count(*) FROM artifacts WHERE job_id = 2") == 1
        assert (trained / "jobs" / "2" / "output" / "adapter_model.safetensors").is_file()
    finally:
        (trained / "trash").unlink()


def test_project_delete_removes_its_folders_and_keeps_a_model_another_project_uses(trained: Path) -> None:
    model = trained / "models" / "demo-llama"
    assert run_cli("project", "create", "other", home=trained).returncode == 0
    store = open_store(trained)
    with store.write() as session:
        register_artifact(session, 2, "model", model, name="shared-base")
    store.close()
    jobs = [p.name for p in (trained / "jobs").iterdir()]
    result = run_cli("project", "delete", "demo", "--force", home=trained)
    assert result.returncode == 0 and "deleted project demo" in result.stdout, result.stderr
    for job in jobs:
        assert not (trained / "jobs" / job).exists()
    assert not list((trained / "datasets").iterdir())
    assert (model / "config.json").is_file()  # project "other" still has it
    assert not any((trained / "trash").iterdir())


# --- datasets -------------------------------------------------------------------------------------------------

FIXTURES = Path(__file__).parent / "fixtures" / "datasets"


def _import(store, project_id: int, source: Path, name: str) -> int:  # type: ignore[no-untyped-def]
    """A real import (the job handler, in this process); returns the dataset id."""
    from engine.datasets.importer import run_import_job
    from engine.jobctx import JobContext
    from store.jobs import get_job, transition

    config = {"project_id": project_id, "source": str(source), "name": name, "dedup": "none"}
    with store.write() as session:
        job_id = int(create_job(session, project_id, "dataset-import", config, name=name, slot="data").id)
        transition(session, job_id, "running")
    folder = store.home / "jobs" / str(job_id)
    folder.mkdir(parents=True)
    run_import_job(JobContext(store, job_id, config, folder))
    with store.write() as session:
        transition(session, job_id, "completed")
        return int(get_job(session, job_id).result["dataset_id"])


def _failed_import(store, project_id: int, name: str) -> int:  # type: ignore[no-untyped-def]
    from store.jobs import transition

    with store.write() as session:
        job_id = int(create_job(session, project_id, "dataset-import", {"name": name}, name=name, slot="data").id)
        transition(session, job_id, "running")
        transition(session, job_id, "failed", error=f"{name}.jsonl:2: invalid JSON: expecting value at column 1")
    (store.home / "jobs" / str(job_id)).mkdir(parents=True)
    (store.home / "jobs" / str(job_id) / "job.log").write_text("failed\n")
    return job_id


def test_dataset_delete_refused_while_used_then_forced(home: Path) -> None:
    from store.projects import create_project

    store = open_store(home)
    with store.write() as session:
        pid = int(create_project(session, "p").id)  # type: ignore[arg-type]
    did = _import(store, pid, FIXTURES / "alpaca.json", "alpaca")
    with store.write() as session:
        run = int(create_job(session, pid, "train", {"run": {}, "dataset_id": did}, slot="nowhere").id)  # type: ignore[arg-type]
    store.close()
    snapshot = home / "datasets" / str(did)
    assert (snapshot / "train.jsonl").is_file()

    refused = run_cli("dataset", "delete", "alpaca", home=home)
    assert refused.returncode == 1 and refused.stderr.strip() == (
        f"error: dataset 'alpaca' is used by run {run}, which is queued; cancel it first (tunedeck run cancel {run})")
    assert run_cli("run", "cancel", str(run), home=home).returncode == 0
    refused = run_cli("dataset", "delete", str(did), home=home)
    assert refused.returncode == 1 and refused.stderr.strip() == (
        f"error: dataset 'alpaca' was used by job(s) {run} (run, cancelled); they keep their records but cannot be "
        "resumed or retried without it: pass --force to delete it anyway")
    assert snapshot.is_dir() and _count(home, "SELECT count(*) FROM datasets") == 1

    gone = run_cli("dataset", "delete", "alpaca", "--project", "p", "--force", home=home)
    assert gone.returncode == 0 and gone.stdout.startswith(f"deleted dataset alpaca (id {did}) ("), gone.stderr
    assert _count(home, "SELECT count(*) FROM datasets") == 0 and not snapshot.exists()
    assert _count(home, "SELECT count(*) FROM jobs WHERE id = ?", run) == 1  # the run keeps its record
    assert not any((home / "trash").iterdir())
    missing = run_cli("dataset", "delete", "alpaca", home=home)
    assert missing.returncode != 0 and "no dataset or failed import named 'alpaca'" in missing.stderr


def test_failed_imports_are_listed_and_deletable(home: Path) -> None:
    from store.projects import create_project

    store = open_store(home)
    with store.write() as session:
        pid = int(create_project(session, "p").id)  # type: ignore[arg-type]
    _import(store, pid, FIXTURES / "sharegpt.json", "chats")
    first = _failed_import(store, pid, "broken")
    again = _failed_import(store, pid, "broken")  # retried, failed again: one row, the latest
    store.close()

    listed = json.loads(run_cli("dataset", "list", "p", "--json", home=home).stdout)
    assert [(d["kind"], d["name"], d["status"], d["job_id"] if d["kind"] == "failed" else d["id"])
            for d in listed] == [("failed", "broken", "failed", again), ("dataset", "chats", "ready", 1)]
    text = run_cli("dataset", "list", "p", home=home).stdout
    assert f"failed import (job {again})" in text and "chats" in text

    gone = run_cli("dataset", "delete", "broken", home=home)
    assert gone.returncode == 0 and gone.stdout.startswith(f"deleted the failed import(s) of broken (job {first}, "
                                                           f"{again})"), gone.stderr
    assert _count(home, "SELECT count(*) FROM jobs WHERE name = 'broken'") == 0
    assert not (home / "jobs" / str(first)).exists() and not (home / "jobs" / str(again)).exists()
    assert [d["name"] for d in json.loads(run_cli("dataset", "list", "p", "--json", home=home).stdout)] == ["chats"]
