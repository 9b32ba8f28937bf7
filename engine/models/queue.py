"""Queueing `model add`: a model folder, a GGUF file or a hub id becomes a model artifact (light: no torch).

Everything that can be refused is refused here, before a job row exists: a missing or broken folder, a file
that is not a GGUF, a hub id that cannot be reached (within seconds, see engine.models.hub), a name taken.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine.launch import start_runner
from engine.model_folder import check_model_folder
from engine.models.hub import cached_model, check_hub_model, is_hub_id
from store.db import Store
from store.errors import AlreadyExists, NotFound, Refused
from store.jobs import create_job
from store.names import check_name
from store.projects import get_project

MODEL_SLOT = "download"  # downloads and dequantizing wait behind each other, not behind training or imports
DTYPES = ("auto", "fp32", "bf16", "fp16")
GGUF_MAGIC = b"GGUF"


def classify(source: str) -> tuple[str, str, str]:
    """(kind 'folder' | 'gguf' | 'hub', source as stored, default name) of a SOURCE; refused when it is none."""
    path = Path(source).expanduser()
    if path.is_dir():
        return "folder", str(path.resolve()), path.resolve().name
    if path.is_file():
        with path.open("rb") as fh:
            magic = fh.read(4)
        if magic != GGUF_MAGIC:
            raise Refused(f"{path}: not a GGUF file (it does not start with GGUF) nor a model folder")
        return "gguf", str(path.resolve()), path.name.removesuffix(".gguf").removesuffix(".GGUF")
    if path.suffix.lower() == ".gguf" or source.startswith((".", "/", "~")) or not is_hub_id(source):
        raise NotFound(f"{source}: no such folder or GGUF file, and not a hub id (org/name)")
    return "hub", source, source.split("/", 1)[1]


def queue_model_add(store: Store, project: str, source: str, *, name: str | None = None, dtype: str = "auto",
                    start: bool = True) -> int:
    """Check SOURCE and queue a `model-add` job; returns the job id."""
    if dtype not in DTYPES:
        raise Refused(f"--dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    kind, stored, default_name = classify(source)
    name = check_name(name or default_name, "model name")
    config: dict[str, Any] = {"source": stored, "source_type": kind, "name": name, "dtype": dtype}
    if kind != "gguf" and dtype != "auto":
        raise Refused(f"--dtype {dtype}: only a GGUF is converted (its dequantized weights are saved in that "
                      f"dtype); a {'folder' if kind == 'folder' else 'hub model'} is registered as it is")
    if kind == "folder":
        check_model_folder(Path(stored))
    elif kind == "hub":
        cached = cached_model(stored)
        if cached is not None:  # nothing to download: registered from the cache, even offline
            config.update(cached_path=str(cached), sha=cached.name)
        else:
            config["hub"] = asdict(check_hub_model(stored))
    with store.write() as session:
        project_row = get_project(session, project)
        if _name_taken(session, project_row.id, name):
            raise AlreadyExists(f"project {project!r} already has an artifact named {name!r} (use --name)")
        config["project_id"] = project_row.id
        job_id = create_job(session, project_row.id, "model-add", config, name=f"add model {name}",
                            slot=MODEL_SLOT).id
    if start:
        start_runner(store.home, MODEL_SLOT)
    return job_id


def _name_taken(session: Any, project_id: int, name: str) -> bool:
    from sqlmodel import select

    from store.models import Artifact

    return session.exec(select(Artifact.id).where(Artifact.project_id == project_id,
                                                  Artifact.name == name)).first() is not None


def model_ref(store: Store, ref: str) -> tuple[str, int] | None:
    """(path, artifact id) of a registered model or merged model named `ref` (or with id `ref`); None when no
    artifact has that name. Lets `--model NAME` work wherever a model folder is accepted."""
    from sqlmodel import select

    from store.models import Artifact

    with store.read() as session:
        if ref.isdigit():
            found = session.get(Artifact, int(ref))
            rows = [found] if found is not None and found.kind in {"model", "merged"} else []
        else:
            rows = list(session.exec(select(Artifact).where(Artifact.name == ref,
                                                            Artifact.kind.in_(("model", "merged")))))  # type: ignore[attr-defined]
    if len(rows) > 1:
        raise Refused(f"model name {ref!r} is ambiguous ({len(rows)} artifacts: "
                      f"{', '.join(str(a.id) for a in rows)}); use its id")
    if not rows:
        return None
    return rows[0].path, int(rows[0].id)  # type: ignore[arg-type]
