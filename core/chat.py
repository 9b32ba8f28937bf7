"""A saved chat session as Markdown, or as chat-format training examples queued for import as a dataset.

The importer makes a new dataset per import and refuses a name already taken, so a session
becomes a new dataset named after it (`chat-<id>-<title>`), not rows appended to an old one.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.errors import Refused

if TYPE_CHECKING:
    from store.db import Store
    from store.models import ChatMessage, ChatSession

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
