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
