"""`tunedeck demo`: the demo project with a tiny local model and a synthetic dataset.

Idempotent: what exists already is kept; what is missing is built. The same builders
(`engine.demo`) are the fixtures of the test suite, so nothing ever needs a hub.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
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


def demo_cache_dir() -> Path:
    """Where this machine keeps a built demo model, keyed by the builder's source and the library versions
    that shape its bytes (the build is deterministic, so a copy is the model a fresh build would make)."""
    import engine.demo

    digest = hashlib.sha256(Path(engine.demo.__file__).read_bytes())
    for package in ("torch", "transformers", "tokenizers", "sentencepiece", "safetensors"):
        try:
            digest.update(f"{package}={metadata.version(package)};".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package}=none;".encode())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "tunedeck" / f"demo-llama-{digest.hexdigest()[:16]}"


def install_demo_model(dest: Path) -> Path:
    """Put the demo model at `dest`: a copy of this machine's cached build, building (and caching) it first
    if needed. Falls back to building at `dest` when the cache cannot be written."""
    cache = demo_cache_dir()
    if not (cache / ".complete").is_file():
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            built = build_demo_model(Path(tempfile.mkdtemp(prefix=".build-", dir=cache.parent)) / "m", seed=0)
            (built / ".complete").write_text("")
            try:
                built.rename(cache)
            except OSError:  # another process cached it meanwhile
                pass
            shutil.rmtree(built.parent, ignore_errors=True)
        except OSError:
            return build_demo_model(dest, seed=0)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        shutil.copytree(cache, tmp / "m", ignore=shutil.ignore_patterns(".complete"))
        (tmp / "m").rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def ensure_demo_project(store: Store, log: Callable[[str], object] | None = None) -> dict[str, Any]:
    """Create whatever part of the demo project is missing; return what it holds."""
    say = log or (lambda _msg: None)
    model_dir = subdir(store.home, "models") / DEMO_MODEL
    data_file = subdir(store.home, "demo") / DEMO_DATA
    if not model_dir.exists():
        say(f"building a tiny Llama model in {model_dir} ...")
        install_demo_model(model_dir)
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
