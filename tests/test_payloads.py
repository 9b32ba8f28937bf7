"""Typed job payloads (store.payloads): refused on write naming the kind and the field, with nothing written; read
through the kind's model, rows of older versions included; the engine fails a job whose row does not fit."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from store.db import open_store
from store.home import job_dir
from store.jobs import create_job, get_job, set_result, transition
from store.payloads import (
    PAYLOADS,
    EvalConfig,
    MergeModelsConfig,
    PayloadError,
    TrainConfig,
    TrainResult,
    config_as,
    job_config,
    job_result,
)
from store.projects import create_project


def _project(store) -> int:  # type: ignore[no-untyped-def]
    with store.write() as session:
        return int(create_project(session, "p").id)  # type: ignore[arg-type]


def _count_jobs(store) -> int:  # type: ignore[no-untyped-def]
    with store.read() as session:
        return int(session.execute(text("SELECT count(*) FROM jobs")).scalar_one())


def test_every_job_kind_the_engine_runs_has_a_payload_model() -> None:
    from engine.handlers import HANDLERS

    assert set(HANDLERS) <= set(PAYLOADS), set(HANDLERS) - set(PAYLOADS)


@pytest.mark.parametrize(("kind", "config", "message"), [
    ("merge", {"artifact_id": 3, "dtype": "fp8"},
     "merge job config: dtype: Input should be 'fp32', 'bf16' or 'fp16' (got 'fp8')"),
    ("train", {"model_path": "/m", "dataset_id": "three"},
     "train job config: dataset_id: Input should be a valid integer, unable to parse string as an integer "
     "(got 'three')"),
    ("eval", {"model_path": "/m", "spilt": "val"}, "eval job config: unknown field 'spilt' (the fields are "),
    ("merge-models", {"inputs": [{"path": "/a", "kind": "lora"}]},
     "merge-models job config: inputs.0.kind: Input should be 'model' or 'adapter' (got 'lora')"),
])
def test_create_job_refuses_a_bad_config_and_writes_nothing(store, kind: str, config: dict,  # type: ignore[no-untyped-def]
                                                            message: str) -> None:
    pid = _project(store)
    with pytest.raises(PayloadError) as refused, store.write() as session:
        create_job(session, pid, kind, config, name="x")
    assert str(refused.value).startswith(message), str(refused.value)
    assert _count_jobs(store) == 0


def test_set_result_refuses_a_bad_result_and_keeps_the_stored_one(store) -> None:  # type: ignore[no-untyped-def]
    pid = _project(store)
    with store.write() as session:
        job_id = int(create_job(session, pid, "train", {"model_path": "/m"}).id)  # type: ignore[arg-type]
        set_result(session, job_id, {"steps": 4, "eval_rewards/margins": 0.25})
    for bad, field in (({"steps": "four"}, "steps"), ({"artifact": 3}, "'artifact'"),
                       ({"eval_rewards/margins": "wide"}, "'eval_rewards/margins'")):
        with pytest.raises(PayloadError, match=f"^train job result: .*{field}"), store.write() as session:
            set_result(session, job_id, {"artifact_id": 9, **bad})
    with store.read() as session:
        job = get_job(session, job_id)
    assert job.result == {"steps": 4, "eval_rewards/margins": 0.25}
    typed = job_result(job)
    assert isinstance(typed, TrainResult) and typed.steps == 4 and typed.artifact_id is None
    assert typed.model_extra == {"eval_rewards/margins": 0.25}


def test_a_written_config_reads_back_typed(store) -> None:  # type: ignore[no-untyped-def]
    pid = _project(store)
    base = {"label": "artifact 1 (base)", "path": "/models/base", "kind": "model", "artifact_id": 1}
    config = {"project_id": pid, "method": "ties", "base": base,
              "inputs": [{**base, "label": "a", "path": "/models/a", "artifact_id": 2},
                         {**base, "label": "b", "path": "/models/b", "artifact_id": None}],
              "input_kind": "model", "weights": [1, 0.5], "density": 0.5, "seed": 0, "name": "ties-merge"}
    with store.write() as session:
        job_id = int(create_job(session, pid, "merge-models", config, name="ties-merge").id)  # type: ignore[arg-type]
    with store.read() as session:
        job = get_job(session, job_id)
    assert job.config == {**config, "weights": [1.0, 0.5]}  # the keys given, numbers as floats
    typed = job_config(job)
    assert isinstance(typed, MergeModelsConfig)
    assert typed.base is not None and typed.base.path == "/models/base"
    assert [s.artifact_id for s in typed.inputs] == [2, None] and typed.weights == [1.0, 0.5]
    assert typed.project == pid
    with pytest.raises(PayloadError, match=f"^job {job_id} is a merge-models job, not train$"):
        config_as(TrainConfig, job)


def test_rows_written_by_older_versions_still_load(home: Path) -> None:
    """A v1 train row (before results existed: a free config), and at v3 an eval row as the first eval queue wrote
    it (no features, no adapter_base) with a result key this version does not know."""
    open_store(home, migrate_to=1).close()
    with sqlite3.connect(home / "tunedeck.db") as conn:
        conn.execute("INSERT INTO projects (name, description, created_at, updated_at) VALUES ('old', '', 1, 2)")
        conn.execute("INSERT INTO jobs (project_id, kind, status, config, created_at, updated_at) "
                     "VALUES (1, 'train', 'completed', '{\"lr\": 0.0002, \"model_path\": \"/m\"}', 1, 2)")
    open_store(home, migrate_to=3).close()
    with sqlite3.connect(home / "tunedeck.db") as conn:
        conn.execute(
            "INSERT INTO jobs (project_id, kind, status, config, result, created_at, updated_at) VALUES (1, 'eval', "
            "'completed', '{\"artifact_id\": 4, \"model_kind\": \"gguf\", \"model_path\": \"/m.gguf\", "
            "\"tokenizer_dir\": null, \"split\": \"val\", \"tasks\": []}', "
            "'{\"model\": \"/m.gguf\", \"perplexity_note\": \"old\"}', 3, 4)")
    store = open_store(home)
    with store.read() as session:
        train, evaluation = get_job(session, 1), get_job(session, 2)
    train_config = job_config(train)
    assert isinstance(train_config, TrainConfig)
    assert train_config.model_path == "/m" and train_config.run == {} and train_config.dataset_path is None
    assert train_config.model_extra == {"lr": 0.0002}
    assert job_result(train).model_dump(exclude_unset=True) == {}
    with pytest.raises(PayloadError, match=r"^job 1 \(train\) config: run, dataset_path missing; queue the job"):
        train_config.require("run", "dataset_path", "model_path")
    eval_config = job_config(evaluation)
    assert isinstance(eval_config, EvalConfig)
    assert eval_config.features is None and eval_config.adapter_base is None and eval_config.model_kind == "gguf"
    eval_result = job_result(evaluation)
    assert eval_result.model_extra == {"perplexity_note": "old"}
    with store.write() as session:  # adding to an old result keeps what it held
        set_result(session, 2, {"peak_rss_mb": 12.5})
    with store.read() as session:
        assert get_job(session, 2).result == {"model": "/m.gguf", "perplexity_note": "old", "peak_rss_mb": 12.5}
    store.close()


def test_the_engine_fails_a_job_whose_row_does_not_fit(store) -> None:  # type: ignore[no-untyped-def]
    """A row written around create_job (by hand, or by a broken version) fails its job naming the field; the
    engine reads it through the kind's model, not key by key."""
    from engine.jobrun import execute_job

    pid = _project(store)
    with store.write() as session:
        job_id = int(create_job(session, pid, "selftest", {"steps": 2, "seconds": 0.01}).id)  # type: ignore[arg-type]
        session.execute(text("UPDATE jobs SET config = :c WHERE id = :id"),
                        {"c": '{"steps": "many", "seconds": 0.01}', "id": job_id})
    assert execute_job(store, job_id, os.getpid()).value == "failed"
    with store.read() as session:
        job = get_job(session, job_id)
    assert job.error == (f"job {job_id} (selftest) config: steps: Input should be a valid integer, unable to parse "
                         "string as an integer (got 'many')")
    assert job_dir(store.home, job_id).is_dir()  # the engine made the job folder through store.home.job_dir
    with store.write() as session:  # a good row of the same kind runs to its end, its result typed
        good = int(create_job(session, pid, "selftest", {"steps": 2, "seconds": 0.01}).id)  # type: ignore[arg-type]
    assert execute_job(store, good, os.getpid()).value == "completed"
    with store.read() as session:
        result = job_result(get_job(session, good))
    assert result.model_dump(include={"steps"}) == {"steps": 2} and (result.peak_rss_mb or 0) > 0


def test_queued_configs_of_the_engine_pass_their_model(store, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The engine's own writers: a push config as the CLI and TUI write it, and the post-training queue's project_id."""
    from engine.jobqueue import queue_job

    pid = _project(store)
    target = tmp_path / "model"
    target.mkdir()
    job_id = queue_job(store, pid, "push", {"artifact_id": 1, "path": str(target), "repo_id": "org/name",
                                            "private": False, "name": "m"}, start=False)
    with store.read() as session:
        job = get_job(session, job_id)
    typed = job_config(job)
    assert typed.project == pid and typed.model_dump(exclude_unset=True)["repo_id"] == "org/name"
    with store.write() as session:  # and transition() never touches the payloads
        transition(session, job_id, "cancelled")
