"""A chat session, written once for both faces (the chat pane and `tunedeck chat`): what MODEL means (a GGUF
path, or a GGUF artifact's id or name), opening the model (or reopening a saved session), recording the
conversation as it happens, and exporting it as Markdown or as chat-format training examples.

The model itself (llama.cpp loading, streaming, the GGUF reader and template renderer) is the engine's
(engine/chat, engine/gguf); it is imported inside the functions that load it. A session row is made with the
first message, so a chat that never got going (a model that failed to load, nothing sent) leaves nothing in the
store. Exports: the importer makes a new dataset per import and refuses a name already taken, so a session
becomes a new dataset named after it (`chat-<id>-<title>`), not rows appended to an old one.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.errors import Refused

if TYPE_CHECKING:
    from engine.chat.llama import Answer, ChatEngine
    from engine.chat.params import SamplingParams
    from store.db import Store
    from store.models import ChatMessage, ChatSession

GGUF_KINDS = {"gguf", "quant"}


# -- the model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelRef:
    """A model file to chat with, and the artifact row it came from (if any)."""

    path: str
    artifact_id: int | None = None
    project_id: int | None = None

    @property
    def label(self) -> str:
        return Path(self.path).name


def _not_found(message: str) -> Exception:
    from engine.chat.errors import ModelNotFound

    return ModelNotFound(message)


def _gguf_in(folder: Path) -> Path:
    found = sorted(folder.glob("*.gguf"))
    if len(found) != 1:
        what = "no .gguf file" if not found else f"{len(found)} .gguf files"
        raise _not_found(f"{folder} holds {what}; give the path of one GGUF file")
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
        raise _not_found(f"{ref}: no such file")
    from store.artifacts import get_artifact
    from store.errors import NotFound

    try:
        with store.read() as session:
            artifact = get_artifact(session, ref, kinds=GGUF_KINDS)
    except NotFound:
        raise _not_found(f"{ref}: no such file, and no GGUF artifact with that id or name") from None
    file = Path(artifact.path)
    if not file.exists():
        raise _not_found(f"artifact {artifact.id} points at {file}, which no longer exists")
    if file.is_dir():
        file = _gguf_in(file)
    return ModelRef(str(file.resolve()), artifact.id, artifact.project_id)


def project_id(store: Store, name: str) -> int:
    """The id of project `name` (NotFound names it)."""
    from store.projects import get_project

    with store.read() as session:
        project = get_project(session, name)
    assert project.id is not None
    return project.id


@dataclass
class SavedSession:
    """A saved chat session to reopen: its model, project, settings and messages (oldest first)."""

    session_id: int
    model_path: str
    project_id: int | None
    params: dict[str, Any]
    messages: list[tuple[str, str, int, dict[str, Any]]] = field(default_factory=list)  # role, text, id, timing


def saved_session(store: Store, session_id: int) -> SavedSession:
    """Session `session_id` as stored (NotFound when there is none)."""
    from store.chat import load_session

    with store.read() as session:
        chat, messages = load_session(session, session_id)
    assert chat.id is not None
    return SavedSession(chat.id, chat.model_path, chat.project_id, dict(chat.params or {}),
                        [(m.role, m.content, m.id, m.timing or {}) for m in messages])  # type: ignore[misc]


def load_model(model: ModelRef, **options: Any) -> ChatEngine:
    """The model loaded for chat (`options`: load_engine's n_ctx, threads, gpu); a ChatError says why not."""
    from engine.chat.llama import load_engine

    return load_engine(model.path, **options)


def sampling_params(**values: Any) -> SamplingParams:
    """Sampling parameters: the defaults with `values` (None values keep the default); BadParams names a bad one."""
    from engine.chat.params import SamplingParams

    return SamplingParams().replace(**values)


def params_from_text(texts: dict[str, str]) -> SamplingParams:
    """Sampling parameters from the text boxes of a form (empty: the default); BadParams names a bad one."""
    from engine.chat.params import SamplingParams

    return SamplingParams.from_text(texts)


def default_threads() -> int:
    """The CPU threads llama.cpp uses by default on this machine."""
    from engine.chat.system import default_threads as threads

    return threads()


def stored_params(params: dict[str, Any]) -> SamplingParams:
    """A saved session's sampling parameters (the defaults when the stored ones are no longer valid)."""
    from engine.chat.params import SamplingParams
    from store.errors import TunedeckError

    try:
        return SamplingParams.from_dict(params)
    except TunedeckError:
        return SamplingParams()


def stored_answer(text: str, timing: dict[str, Any] | None) -> Answer | None:
    """A saved answer with the timing stored with it (None when the timing is missing or incomplete)."""
    from engine.chat.llama import Answer

    if not timing:
        return None
    try:
        return Answer(text=text, **{k: timing[k] for k in Answer.__dataclass_fields__ if k != "text"})
    except (KeyError, TypeError):
        return None


# -- recording -------------------------------------------------------------------------------


def session_params(system: str, params: SamplingParams, settings: dict[str, Any]) -> dict[str, Any]:
    """What a session stores as its parameters: the system prompt, the sampling settings, how the model runs."""
    return {"system": system, **params.to_dict(), **settings}


class ChatRecorder:
    """Writes one chat session's rows; each call is its own short transaction."""

    def __init__(self, store: Store, model: ModelRef, project_id: int | None = None,
                 session_id: int | None = None) -> None:  # fmt: skip
        self.store = store
        self.model = model
        self.project_id = project_id if project_id is not None else model.project_id
        self.session_id = session_id

    def add(self, role: str, content: str, timing: dict[str, Any] | None = None,
            params: dict[str, Any] | None = None) -> int:  # fmt: skip
        """Append a message (making the session first if needed, and storing `params` when given); its id."""
        from store.chat import add_message, create_session, update_params

        with self.store.write() as session:
            if self.session_id is None:
                chat = create_session(session, self.model.path, project_id=self.project_id,
                                      artifact_id=self.model.artifact_id, params=params)  # fmt: skip
                assert chat.id is not None
                self.session_id = chat.id
            elif params is not None:
                update_params(session, self.session_id, params)
            message = add_message(session, self.session_id, role, content, timing)
            assert message.id is not None
            return message.id

    def delete_from(self, message_id: int) -> None:
        """Drop message `message_id` and the later ones (regenerate, edit)."""
        if self.session_id is None:
            return
        from store.chat import delete_messages_from

        with self.store.write() as session:
            delete_messages_from(session, self.session_id, message_id)


# -- exporting -------------------------------------------------------------------------------

EXPORT_DIR = "exports"
ROLE_TITLES = {"system": "System", "user": "You", "assistant": "Assistant"}


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp))


def _timing_note(timing: dict[str, Any]) -> str:
    parts = []
    if timing.get("tokens"):
        parts.append(f"{timing['tokens']} tokens")
    if timing.get("ttft_s") is not None:
        parts.append(f"first token {timing['ttft_s']:.2f} s")
    if timing.get("tok_s"):
        parts.append(f"{timing['tok_s']:.1f} tok/s")
    if timing.get("seed") is not None:
        parts.append(f"seed {timing['seed']}")
    if timing.get("stopped"):
        parts.append("stopped")
    return f"*{', '.join(parts)}*" if parts else ""


def session_markdown(chat: ChatSession, messages: list[ChatMessage]) -> str:
    """The session as a Markdown document: title, model, parameters, then each message with its timing."""
    title = chat.title or f"Chat session {chat.id}"
    params = dict(chat.params or {})
    system = params.pop("system", "")
    lines = [f"# {title}", "", f"- Model: `{chat.model_path}`", f"- Started: {_when(chat.created_at)}"]
    if params:
        lines.append("- Parameters: " + ", ".join(f"{k} {v}" for k, v in sorted(params.items()) if v is not None))
    if system:
        lines += ["", "## System", "", system]
    for message in messages:
        lines += ["", f"## {ROLE_TITLES.get(message.role, message.role)}", "", message.content]
        note = _timing_note(message.timing or {})
        if note and message.role == "assistant":
            lines += ["", note]
    return "\n".join(lines) + "\n"


def export_markdown(store: Store, session_id: int, path: str | Path | None = None) -> Path:
    """Write the session as Markdown to `path` (default: <home>/exports/chat-<id>.md); returns the path."""
    from store.chat import load_session

    with store.read() as session:
        chat, messages = load_session(session, session_id)
    target = Path(path).expanduser() if path else store.home / EXPORT_DIR / f"chat-{session_id}.md"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(session_markdown(chat, messages), encoding="utf-8")
    return target


def training_example(chat: ChatSession, messages: list[ChatMessage]) -> dict[str, Any] | None:
    """The session as one chat-format example: system prompt, then the user/assistant turns.

    Turns whose answer was stopped by the user (cut short) are left out, and so is a question at
    the end without an answer. None when no complete exchange is left.
    """
    turns: list[dict[str, str]] = []
    pending: dict[str, str] | None = None
    for message in messages:
        if message.role == "user":
            pending = {"role": "user", "content": message.content}
        elif message.role == "assistant" and pending is not None:
            if not (message.timing or {}).get("stopped") and message.content.strip():
                turns += [pending, {"role": "assistant", "content": message.content}]
            pending = None
    if not turns:
        return None
    system = str((chat.params or {}).get("system") or "")
    return {"messages": ([{"role": "system", "content": system}] if system else []) + turns}


def dataset_name(chat: ChatSession) -> str:
    """`chat-<id>` plus the title's words, fit for a dataset name."""
    slug = re.sub(r"[^A-Za-z0-9]+", "-", chat.title or "").strip("-").lower()[:40]
    return f"chat-{chat.id}" + (f"-{slug}" if slug else "")


@dataclass(frozen=True)
class DatasetExport:
    """What `session_to_dataset` queued."""

    job_id: int
    name: str
    path: Path
    examples: int


def _dataset_rows(store: Store, ref: str, project: str) -> tuple[str, list[dict[str, Any]]]:
    """(name, chat rows) of an imported chat dataset: its train and val splits, ids dropped."""
    from store.datasets import find_dataset

    with store.read() as session:
        dataset = find_dataset(session, ref, project)
    if dataset.format not in {"chat", "sharegpt", "alpaca"}:
        raise Refused(f"dataset {dataset.name!r} is {dataset.format} data; a chat session appends to chat data")
    rows: list[dict[str, Any]] = []
    for split in ("train", "val"):
        path = Path(dataset.path) / f"{split}.jsonl"
        with path.open(encoding="utf-8") as fh:
            rows += [{"messages": json.loads(line)["messages"]} for line in fh if line.strip()]
    return dataset.name, rows


def session_to_dataset(store: Store, session_id: int, project: str | None = None,
                       name: str | None = None, append_to: str | None = None) -> DatasetExport:  # fmt: skip
    """Write the session as a chat-format JSONL and queue its import as a new dataset of `project`
    (default: the session's own project). With `append_to`, the new dataset is that dataset's rows plus
    the session (imported datasets are immutable snapshots, so runs keep the data they trained on).
    Refused when there is no project or nothing complete to train on."""
    from store.chat import load_session, project_name

    with store.read() as session:
        chat, messages = load_session(session, session_id)
        project = project or project_name(session, chat)
    if not project:
        raise Refused(f"chat session {session_id} is in no project; say which project the dataset goes to")
    example = training_example(chat, messages)
    if example is None:
        raise Refused(f"chat session {session_id} has no finished question and answer to train on")
    rows: list[dict[str, Any]] = []
    if append_to:
        base_name, rows = _dataset_rows(store, append_to, project)
        name = name or f"{base_name}+chat{chat.id}"
    name = name or dataset_name(chat)
    rows.append(example)
    target = store.home / EXPORT_DIR / f"{name}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".partial")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    tmp.replace(target)
    from engine.datasets.queue import queue_import

    try:
        job_id = queue_import(store, project, str(target), name=name, format="chat")
    except Exception:
        target.unlink(missing_ok=True)
        raise
    return DatasetExport(job_id, name, target, len(rows))
