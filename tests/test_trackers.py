"""Experiment trackers (run config report_to): parsed and refused before queueing when their package is missing;
a real demo run writes TensorBoard event files whose losses are the store's, and wandb's offline run folder."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from pathlib import Path

import pytest
from conftest import copy_home, run_cli

from engine.train.config import ConfigError, apply_overrides, default_config, parse_config
from engine.train.trackers import missing_trackers


def test_report_to_is_off_by_default_and_parses_lists() -> None:
    assert default_config().report_to == []
    cfg = apply_overrides(default_config(), ["report_to=tensorboard, wandb"])
    assert cfg.report_to == ["tensorboard", "wandb"]
    assert parse_config({"report_to": None}).report_to == []
    assert apply_overrides(default_config(), ["report_to=none"]).report_to == []


def test_unknown_tracker_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"report_to": ["tensorbord"]}, "run.yaml")
    assert "run.yaml: report_to[0]: must be one of tensorboard, wandb, mlflow" in str(err.value)
    assert "did you mean 'tensorboard'" in str(err.value)


def test_missing_tracker_package_names_the_pip_command() -> None:
    absent = [n for n in ("mlflow", "wandb", "tensorboard") if importlib.util.find_spec(n) is None]
    if not absent:
        pytest.skip("every tracker package is installed here")
    lines = missing_trackers(absent[:1])
    assert len(lines) == 1 and f"pip install {absent[0]}" in lines[0]
    assert missing_trackers([n for n in ("tensorboard", "wandb", "mlflow") if n not in absent]) == []


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory, demo_home_src: Path) -> Path:
    return copy_home(demo_home_src, tmp_path_factory.mktemp("trackers") / "home")


@pytest.mark.slow
def test_missing_tracker_is_refused_before_queueing(demo_home: Path) -> None:
    if importlib.util.find_spec("mlflow") is not None:
        pytest.skip("mlflow is installed here")
    result = run_cli("run", "new", "demo", "--preset", "smoke", "--set", "report_to=mlflow", "--json",
                     home=demo_home)
    assert result.returncode != 0
    assert "pip install mlflow" in result.stderr + result.stdout
    with sqlite3.connect(demo_home / "tunedeck.db") as conn:
        assert conn.execute("SELECT count(*) FROM jobs WHERE kind = 'train'").fetchone()[0] == 0


@pytest.mark.slow
def test_tensorboard_and_offline_wandb_receive_the_stores_losses(demo_home: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    pytest.importorskip("wandb")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    env = {"WANDB_MODE": "offline", "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
           "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "WANDB_SILENT": "true"}
    result = run_cli("run", "new", "demo", "--wait", "--json", "--preset", "smoke", "--set", "max_steps=6",
                     "--set", "logging_steps=1", "--set", "eval_steps=0", "--set", "report_to=tensorboard,wandb",
                     home=demo_home, env=env, timeout=600)
    data = json.loads(result.stdout)
    assert data["status"] == "completed", (data.get("error"), result.stderr)
    job_dir = demo_home / "jobs" / str(data["id"])
    log = Path(data["log_path"]).read_text()
    assert f"tensorboard: event files in {job_dir / 'tensorboard'}" in log and "WANDB_MODE offline" in log

    events = list((job_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert events, list(job_dir.iterdir())
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    board = {e.step: e.value for e in acc.Scalars("train/loss")}
    with sqlite3.connect(demo_home / "tunedeck.db") as conn:
        stored = dict(conn.execute("SELECT step, value FROM metrics WHERE job_id = ? AND name = 'loss'",
                                   (data["id"],)).fetchall())
    assert sorted(board) == sorted(stored) == list(range(1, 7))
    for step, value in stored.items():
        assert board[step] == pytest.approx(value, rel=1e-6), (step, board[step], value)  # float32 in the file

    runs = list((job_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((job_dir / "wandb").iterdir())
    assert list(runs[0].glob("run-*.wandb")), list(runs[0].iterdir())
