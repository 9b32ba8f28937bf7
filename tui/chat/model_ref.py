"""What `MODEL` means to the chat pane and `tunedeck chat`: a GGUF path, or a GGUF artifact's id or name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tui.chat.errors import ModelNotFound

if TYPE_CHECKING:
    from store.db import Store

GGUF_KINDS = {"gguf", "quant"}


@dataclass(frozen=True)
class ModelRef:
    """A model file to chat with, and the artifact row it came from (if any)."""

    path: str
    artifact_id: int | None = None
    project_id: int | None = None

    @property
    def label(self) -> str:
        return Path(self.path).name


def _gguf_in(folder: Path) -> Path:
    found = sorted(folder.glob("*.gguf"))
    if len(found) != 1:
        what = "no .gguf file" if not found else f"{len(found)} .gguf files"
        raise ModelNotFound(f"{folder} holds {what}; give the path of one GGUF file")
    return found[0]


def looks_like_path(ref: str) -> bool:
    """Whether `ref` can only mean a file (so there is no artifact to look up)."""
    return "/" in ref or ref.lower().endswith(".gguf") or ref.startswith((".", "~")) or not ref.strip()


def resolve_model(ref: str, store: Store | None = None) -> ModelRef:
    """`ref` as a path when such a file exists, else as the id or name of a gguf/quant artifact in `store`."""
    path = Path(ref).expanduser()
    if path.exists():
        return ModelRef(str((_gguf_in(path) if path.is_dir() else path).resolve()))
    if store is None or looks_like_path(ref):
        raise ModelNotFound(f"{ref}: no such file")
    from store.artifacts import get_artifact
    from store.errors import NotFound

    try:
        with store.read() as session:
            artifact = get_artifact(session, ref, kinds=GGUF_KINDS)
    except NotFound:
        raise ModelNotFound(f"{ref}: no such file, and no GGUF artifact with that id or name") from None
    file = Path(artifact.path)
    if not file.exists():
        raise ModelNotFound(f"artifact {artifact.id} points at {file}, which no longer exists")
    if file.is_dir():
        file = _gguf_in(file)
    return ModelRef(str(file.resolve()), artifact.id, artifact.project_id)
