"""The artifact verbs both faces call: how to serve one, and deleting one with its files."""

from __future__ import annotations

from typing import Any

from store.db import Store


def serve_artifact(store: Store, ref: str) -> dict[str, Any]:
    """The commands that serve artifact `ref` (`vllm serve`, `llama-server`) under `commands`; beside a GGUF an
    Ollama Modelfile is written (its path under `modelfile`)."""
    from engine.export import serve_info

    return serve_info(store, ref)


def delete_artifact(store: Store, artifact_id: int, force: bool = False) -> list[tuple[int, str, str, bool]]:
    """Delete an artifact and its files; with `force` also what derives from it. Returns (id, kind, path, whether
    its files were removed: False for files outside the home, which stay) for each artifact deleted."""
    from engine.artifacts import delete_with_files

    return delete_with_files(store, artifact_id, force=force)


def queue_push(store: Store, ref: str, repo_id: str, private: bool = False) -> int:
    """Queue a push of artifact `ref` to the Hub repo `repo_id` (org/name; huggingface-hub's own login); refused
    for a repo id the Hub would refuse or an artifact whose files are gone. Returns the job id."""
    from pathlib import Path

    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from engine.jobqueue import queue_job
    from store.artifacts import get_artifact
    from store.errors import NotFound, Refused

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise Refused(f"repo id {repo_id!r}: {exc}") from None
    if "/" not in repo_id:
        raise Refused(f"repo id {repo_id!r}: expected org/name")
    with store.read() as session:
        artifact = get_artifact(session, ref)
    if not Path(artifact.path).exists():
        raise NotFound(f"{artifact.path}: the artifact's files are gone")
    return queue_job(store, artifact.project_id, "push", {"artifact_id": artifact.id, "path": artifact.path,
                                                          "repo_id": repo_id, "private": private,
                                                          "name": artifact.name}, name=f"push {artifact.name}")
