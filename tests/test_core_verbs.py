"""The headless verbs in core/: written once, so the command line and the app refuse the same request with the
same words; and the verbs themselves (list, cancel, follow a log, export) against a real store."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from textual.pilot import Pilot
from tui_pilot import drive, notes, wait_for

from cli.main import main
from core.jobs import cancel_job, follow_log, list_jobs, read_job
from core.runs import export_run, resume_run, retry_run
from store.db import Store
from store.errors import NotFound, Refused, TunedeckError
from store.home import job_dir, job_log
from store.projects import create_project
from tui.app import TunedeckApp
from tui.screens.job import JobScreen
from tui.screens.run import RunScreen


def _job(store: Store, project_id: int, kind: str, status: str, **config: object) -> int:
    """A job row in `status`; a running one beats now from this (live) process, so no reader reaps it."""
    now = time.time()
    running = status == "running"
    with store.raw() as conn:
        cursor = conn.execute(
            "INSERT INTO jobs (project_id, kind, status, config, progress, step, pid, created_at, updated_at, "
            "started_at, heartbeat_at, finished_at) VALUES (?, ?, ?, ?, 0, 3, ?, ?, ?, ?, ?, ?)",
            (project_id, kind, status, json.dumps(config), os.getpid() if running else None, now, now, now - 1,
             now if running else None, None if status in ("queued", "running") else now),
        )
        return int(cursor.lastrowid)


@pytest.fixture
def runs(store: Store) -> dict[str, int]:
    with store.write() as session:
        pid = create_project(session, "p").id
        other = create_project(session, "q").id
    return {
        "completed": _job(store, pid, "train", "completed", run_yaml="lr: 0.001\n", dataset_id=4, dataset_hash="ab"),
        "running": _job(store, pid, "train", "running"),
        "import": _job(store, pid, "dataset-import", "failed"),
        "other": _job(store, other, "train", "queued"),
    }


def _cli_error(store: Store, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(["--home", str(store.home), *args])
    err = capsys.readouterr().err.strip()
    assert code == 1, err
    return err.removeprefix("error: ")


def _tui_warning(store: Store, screen_type: type, job_id: int, action: str) -> str:
    """The warning the app shows when the screen's `action` is asked for (as the palette or a key would)."""

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        app.push_screen(screen_type(job_id))
        await wait_for(pilot, lambda: isinstance(app.screen, screen_type) and app.screen.detail, "the screen")
        getattr(app.screen, f"action_{action}")()
        await wait_for(pilot, lambda: notes(app), "a notification")

    return notes(drive(store, scenario))


@pytest.mark.parametrize(("status", "verb", "action", "message"), [
    ("completed", "resume", "resume_run", "run {id} is completed; only failed, cancelled or interrupted runs can be "
                                          "resumed"),
    ("running", "retry", "retry_run", "run {id} is running; only failed, cancelled or interrupted runs can be "
                                      "retried"),
    ("completed", "cancel", "cancel_run", "run {id} is completed; only queued or running runs can be cancelled"),
])
def test_cli_and_tui_refuse_a_run_verb_with_the_same_message(store: Store, runs: dict[str, int], capsys,
                                                            status: str, verb: str, action: str,
                                                            message: str) -> None:
    job_id = runs[status]
    expected = message.format(id=job_id)
    assert _cli_error(store, capsys, "run", verb, str(job_id)) == expected
    assert _tui_warning(store, RunScreen, job_id, action) == expected
    with pytest.raises(Refused) as exc:
        {"resume": resume_run, "retry": retry_run, "cancel": cancel_job}[verb](store, job_id)
    assert str(exc.value) == expected
    assert read_job(store, job_id).status == status  # nothing was done


def test_cli_and_tui_refuse_cancelling_an_ended_job_alike(store: Store, runs: dict[str, int], capsys) -> None:
    job_id = runs["import"]
    expected = f"job {job_id} is failed; only queued or running jobs can be cancelled"
    assert _cli_error(store, capsys, "job", "cancel", str(job_id)) == expected
    assert _tui_warning(store, JobScreen, job_id, "cancel_job") == expected


def test_requeueing_another_kind_of_job_is_refused_by_name(store: Store, runs: dict[str, int], capsys) -> None:
    job_id = runs["import"]
    expected = f"job {job_id} is a dataset-import job, not a training run"
    assert _cli_error(store, capsys, "run", "resume", str(job_id)) == expected
    with pytest.raises(Refused, match=expected):
        retry_run(store, job_id)


def test_list_jobs_filters_by_project_and_kind(store: Store, runs: dict[str, int], capsys) -> None:
    assert [j.id for j in list_jobs(store)] == sorted(runs.values(), reverse=True)
    assert [j.id for j in list_jobs(store, "p", kind="train")] == [runs["running"], runs["completed"]]
    assert [j.id for j in list_jobs(store, "q")] == [runs["other"]]
    with pytest.raises(NotFound):
        list_jobs(store, "nope")
    assert main(["--home", str(store.home), "run", "list", "p", "--json"]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [runs["running"], runs["completed"]]


def test_cancel_takes_a_queued_run_off_the_queue(store: Store, runs: dict[str, int]) -> None:
    assert cancel_job(store, runs["other"]) == "cancelled"
    assert read_job(store, runs["other"]).status == "cancelled"
    assert cancel_job(store, runs["running"]) == "running"  # asked to stop: the engine winds down
    assert read_job(store, runs["running"]).cancel_requested


def test_follow_log_reads_an_ended_jobs_log_from_its_folder(store: Store, runs: dict[str, int]) -> None:
    job_id = runs["completed"]
    assert job_log(store.home, job_id) == job_dir(store.home, job_id) / "job.log" == store.home / "jobs" / str(
        job_id) / "job.log"
    assert list(follow_log(store, job_id)) == []  # no log yet
    job_dir(store.home, job_id, create=True)
    job_log(store.home, job_id).write_text("one\ntwo\n")
    assert "".join(follow_log(store, job_id, follow=True)) == "one\ntwo\n"  # ended: following stops at once


def test_export_run_writes_the_config_with_the_command_that_reproduces_it(store: Store, runs: dict[str, int],
                                                                         tmp_path: Path, capsys) -> None:
    job_id = runs["completed"]
    done = export_run(store, job_id, tmp_path / "r.yaml")
    text = done.path.read_text()
    assert done.command == f"tunedeck run new p --config {tmp_path / 'r.yaml'}"
    assert text.startswith(f"# tunedeck run {job_id} of project p\n# reproduce: {done.command}\n")
    assert "# dataset 4 content hash ab\n" in text and text.endswith("lr: 0.001\n")
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(Refused, match="not a training run"):
        export_run(store, runs["import"], tmp_path / "x.yaml")


def test_the_estimate_and_the_forms_line_are_one_computation(store: Store, demo_model_dir: Path) -> None:
    """`tunedeck estimate` (core.estimate.estimate_model) and the New Run form's line go through one wiring."""
    from core.estimate import estimate_model, form_estimate
    from engine.gpu.estimate import GIB
    from engine.gpu.summary import form_settings

    data = {"model": str(demo_model_dir), "method": "lora", "training": {"per_device_batch": 2, "max_length": 256}}
    est, where = estimate_model(store, str(demo_model_dir), form_settings(data))
    assert where == str(demo_model_dir / "config.json") and est.total_bytes > 0
    assert form_estimate(store, data).startswith(f"GPU memory ≈ {est.total_bytes / GIB:.1f} GiB · ")
    with pytest.raises(NotFound):
        estimate_model(store, str(demo_model_dir / "nowhere"), form_settings(data))


def test_push_is_checked_alike_from_the_cli_and_the_artifact_screen(store: Store, tmp_path: Path, capsys) -> None:
    """Before core.artifacts.queue_push the screen only counted slashes: `org/na me` was refused by the CLI with
    the Hub's reason and by the app with its own, and the app queued a push of files that were gone."""
    from engine.artifacts import register_artifact
    from tui.screens.artifact import queue_action

    weights = tmp_path / "m.gguf"
    weights.write_bytes(b"GGUF")
    with store.write() as session:
        pid = create_project(session, "p").id
        artifact_id = int(register_artifact(session, pid, "gguf", weights, name="m").id)  # type: ignore[arg-type]
    for repo in ("not a repo", "noslash", "org/a..b"):
        with pytest.raises(Refused) as exc:
            queue_action(store, "push", artifact_id, {"repo": repo})
        assert _cli_error(store, capsys, "push", str(artifact_id), repo) == str(exc.value)
        assert str(exc.value).startswith(f"repo id {repo!r}: ")
    weights.unlink()
    with pytest.raises(NotFound, match="the artifact's files are gone"):
        queue_action(store, "push", artifact_id, {"repo": "org/name"})
    assert list_jobs(store) == []  # nothing was queued


@pytest.mark.parametrize(("action", "cli_args", "values"), [
    ("quantize", ["quantize", "{id}", "--quant", "q4_k_m,q9_9"], {"quant": "q4_k_m,q9_9"}),
    ("convert", ["convert", "{id}", "--quant", "q9_9"], {"quant": "q9_9"}),
    ("merge", ["merge", "{id}"], {}),  # a GGUF is no adapter
])
def test_queueing_on_an_artifact_is_refused_alike_from_the_cli_and_the_screen(
        store: Store, tmp_path: Path, capsys, action: str, cli_args: list[str], values: dict[str, str]) -> None:
    from engine.artifacts import register_artifact
    from tui.screens.artifact import queue_action

    weights = tmp_path / "m.gguf"
    weights.write_bytes(b"GGUF")
    with store.write() as session:
        pid = create_project(session, "p").id
        artifact_id = int(register_artifact(session, pid, "gguf", weights, name="m").id)  # type: ignore[arg-type]
    with pytest.raises(TunedeckError) as exc:
        queue_action(store, action, artifact_id, values)
    assert _cli_error(store, capsys, *[a.format(id=artifact_id) for a in cli_args]) == str(exc.value)
    assert list_jobs(store) == []
