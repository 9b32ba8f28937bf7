"""Queueing a dataset import from the CLI or the TUI (light: no heavy imports here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.launch import start_runner
from engine.model_folder import check_tokenizer_files
from store.datasets import dataset_name_taken
from store.db import Store
from store.errors import AlreadyExists, NotFound, Refused
from store.jobs import create_job
from store.names import check_name
from store.projects import get_project

SOURCE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt", ".gz")
IMPORT_SLOT = "data"


def resolve_source(source: str) -> tuple[str, str]:
    """(source as stored, default dataset name): a local path made absolute, or a hub id as given."""
    path = Path(source).expanduser()
    if path.exists():
        name = _stem(path) if path.is_file() else path.name
        return str(path.resolve()), name
    if path.suffix.lower() in SOURCE_SUFFIXES or source.startswith((".", "/", "~")) or not source.strip():
        raise NotFound(f"{source}: no such file or directory")
    return source, source.split(":")[0].rsplit("/", 1)[-1]


def _stem(path: Path) -> str:
    """A file's name without its data suffix, and without .gz before that (``chat.jsonl.gz`` -> ``chat``)."""
    name = path.name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    stem, dot, suffix = name.rpartition(".")
    return stem if dot and stem and f".{suffix.lower()}" in SOURCE_SUFFIXES else name


def queue_import(store: Store, project: str, source: str, *, name: str | None = None, **options: Any) -> int:
    """Check what can be checked now, queue a `dataset-import` job and start the data runner.

    Returns the job id. `options` are the importer's settings (format, val_fraction, seed,
    dedup, near_threshold, on_error, tokenizer, max_length).
    """
    stored_source, default_name = resolve_source(source)
    name = check_name(name or default_name, "dataset name")
    tokenizer = options.get("tokenizer")
    if tokenizer and Path(tokenizer).expanduser().exists():
        folder = Path(tokenizer).expanduser()
        if folder.is_dir():
            check_tokenizer_files(folder)
        elif folder.suffix != ".gguf":
            raise Refused(f"{folder}: not a model folder nor a .gguf file (--tokenizer)")
        options["tokenizer"] = str(folder.resolve())
    with store.write() as session:
        project_row = get_project(session, project)
        if dataset_name_taken(session, project_row.id, name):
            raise AlreadyExists(f"project {project!r} already has a dataset named {name!r} (use --name)")
        config = {"project_id": project_row.id, "source": stored_source, "name": name, **options}
        job_id = create_job(session, project_row.id, "dataset-import", config, name=name, slot=IMPORT_SLOT).id
    start_runner(store.home, IMPORT_SLOT)
    return job_id
