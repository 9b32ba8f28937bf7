"""Experiment trackers beside the store (run config `report_to`): TensorBoard, Weights & Biases and MLflow.

Every tracker writes under the run's job folder: TensorBoard event files in `jobs/<id>/tensorboard`, wandb's run
folder in `jobs/<id>/wandb` (WANDB_MODE=offline is honoured as wandb reads it), MLflow's file store in
`jobs/<id>/mlruns` unless MLFLOW_TRACKING_URI names another. Light: no torch, no tracker import here.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from store.errors import Refused

# tracker name -> (module to find, package to install)
PACKAGES: dict[str, tuple[str, str]] = {
    "tensorboard": ("tensorboard", "tensorboard"),
    "wandb": ("wandb", "wandb"),
    "mlflow": ("mlflow", "mlflow"),
}


def missing_trackers(report_to: list[str]) -> list[str]:
    """One line per tracker whose package is not installed, naming the pip command that fixes it."""
    out = []
    for name in report_to:
        module, package = PACKAGES[name]
        if importlib.util.find_spec(module) is None:
            out.append(f"report_to: {name} needs the {package} package, which is not installed: "
                       f"pip install {package}  (or pip install 'tunedeck[trackers]')")
    return out


def check_trackers(report_to: list[str]) -> None:
    """Refuse (before queueing) a run whose trackers cannot be loaded."""
    if problems := missing_trackers(report_to):
        raise Refused("\n".join(problems))


def tracker_setup(report_to: list[str], job_dir: Path, job_id: int) -> tuple[dict[str, Any], list[str]]:
    """The TRL config keywords for the trackers and the log lines saying where each writes. Sets the environment
    variables transformers' callbacks read (TENSORBOARD_LOGGING_DIR, WANDB_DIR, MLFLOW_TRACKING_URI)."""
    if not report_to:
        return {"report_to": "none"}, []
    check_trackers(report_to)
    lines = []
    if "tensorboard" in report_to:
        folder = job_dir / "tensorboard"
        os.environ["TENSORBOARD_LOGGING_DIR"] = str(folder)
        lines.append(f"tensorboard: event files in {folder} (tensorboard --logdir {folder})")
    if "wandb" in report_to:
        folder = job_dir / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["WANDB_DIR"] = str(job_dir)  # wandb makes its own wandb/ folder inside
        mode = os.environ.get("WANDB_MODE", "online")
        lines.append(f"wandb: run folder in {folder} (WANDB_MODE {mode})")
    if "mlflow" in report_to:
        if not os.environ.get("MLFLOW_TRACKING_URI") or os.environ.get("TUNEDECK_MLFLOW_DEFAULT") == "1":
            os.environ["MLFLOW_TRACKING_URI"] = f"file:{job_dir / 'mlruns'}"
            os.environ["TUNEDECK_MLFLOW_DEFAULT"] = "1"  # ours, replaced for the next job of this process
        lines.append(f"mlflow: tracking uri {os.environ['MLFLOW_TRACKING_URI']}")
    return {"report_to": list(report_to), "run_name": f"tunedeck-job{job_id}"}, lines
