"""`tunedeck demo`: the demo project with a tiny local model and a synthetic dataset.

Idempotent: what exists already is kept; what is missing is built. The same builders
(`engine.demo`) are the fixtures of the test suite, so nothing ever needs a hub.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlmodel import select

from engine.artifacts import register_artifact
from engine.datasets.queue import queue_import
from engine.demo import build_demo_model, write_demo_dataset
from store.db import Store
from store.errors import NotFound
from store.home import subdir
from store.models import Artifact, Dataset
from store.projects import create_project, get_project

DEMO_PROJECT = "demo"
DEMO_MODEL = "demo-llama"
DEMO_DATA = "demo-reverse-words.jsonl"
DEMO_EXAMPLES = 400
DEMO_DATASET = "demo"


def ensure_demo_project(store: Store, log: Callable[[str], object] | None = None) -> dict[str, Any]:
    """Create whatever part of the demo project is missing; return what it holds."""
    say = log or (lambda _msg: None)
    model_dir = subdir(store.home, "models") / DEMO_MODEL
    data_file = subdir(store.home, "demo") / DEMO_DATA
    if not model_dir.exists():
        say(f"building a tiny Llama model in {model_dir} ...")
        build_demo_model(model_dir, seed=0)
    if not data_file.exists():
        say(f"writing {DEMO_EXAMPLES} examples to {data_file} ...")
        write_demo_dataset(data_file, n=DEMO_EXAMPLES, seed=0)

    with store.write() as session:
        try:
            project = get_project(session, DEMO_PROJECT)
        except NotFound:
            project = create_project(
                session, DEMO_PROJECT, "Demo: a tiny Llama learning to reverse a list of words (CPU, minutes)"
            )
        have = {a.path: a for a in session.exec(select(Artifact).where(Artifact.project_id == project.id))}
        model = have.get(str(model_dir)) or register_artifact(
            session, project.id, "model", model_dir, name=DEMO_MODEL,
            meta={"architecture": "llama", "source": "tunedeck demo", "chat_template": "chatml"},
        )
        data = have.get(str(data_file)) or register_artifact(
            session, project.id, "data", data_file, name=DEMO_DATA,
            meta={"format": "alpaca", "rows": DEMO_EXAMPLES, "source": "tunedeck demo"},
        )
        result: dict[str, Any] = {
            "project": project.name,
            "project_id": project.id,
            "model": {"artifact_id": model.id, "path": model.path},
            "data": {"artifact_id": data.id, "path": data.path},
        }
        existing = session.exec(
            select(Dataset).where(Dataset.project_id == project.id, Dataset.name == DEMO_DATASET)
        ).first()
    if existing is not None:
        result["dataset"] = {"id": existing.id, "path": existing.path}
    else:
        say(f"importing {data_file.name} as dataset {DEMO_DATASET!r} ...")
        result["import_job_id"] = queue_import(
            store, DEMO_PROJECT, str(data_file), name=DEMO_DATASET, format="alpaca", tokenizer=str(model_dir),
            max_length=128, dedup="exact",
        )
    say(f"demo project ready: model {model_dir}, data {data_file}")
    return result
