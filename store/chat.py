"""Chat session queries: create, add messages with their timing, list, load, and cut the tail for regenerate/edit."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session, col, delete, select

from store.errors import NotFound
from store.models import ChatMessage, ChatSession, Project, now

ROLES = ("system", "user", "assistant")
TITLE_LENGTH = 60


def create_session(session: Session, model_path: str, *, project_id: int | None = None,
                   artifact_id: int | None = None, title: str = "",
                   params: dict[str, Any] | None = None) -> ChatSession:  # fmt: skip
    """Insert a chat session (a model and its settings; messages come with `add_message`)."""
    row = ChatSession(model_path=model_path, project_id=project_id, artifact_id=artifact_id, title=title,
                      params=dict(params or {}))  # fmt: skip
    session.add(row)
    session.flush()
    return row


def get_session(session: Session, session_id: int) -> ChatSession:
    """The chat session with this id, or NotFound."""
    row = session.get(ChatSession, session_id)
    if row is None:
        raise NotFound(f"no chat session {session_id}")
    return row


def _title(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= TITLE_LENGTH else line[: TITLE_LENGTH - 1] + "…"


def add_message(session: Session, session_id: int, role: str, content: str,
                timing: dict[str, Any] | None = None) -> ChatMessage:  # fmt: skip
    """Append a message; the first user message also names an untitled session."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    chat = get_session(session, session_id)
    message = ChatMessage(session_id=session_id, role=role, content=content, timing=dict(timing or {}))
    session.add(message)
    if role == "user" and not chat.title:
        chat.title = _title(content)
    chat.updated_at = now()
    session.add(chat)
    session.flush()
    return message


def update_params(session: Session, session_id: int, params: dict[str, Any]) -> ChatSession:
    """Replace a session's stored parameters (the system prompt and sampling settings in use)."""
    chat = get_session(session, session_id)
    chat.params = dict(params)
    chat.updated_at = now()
    session.add(chat)
    session.flush()
    return chat


def list_sessions(session: Session, project_id: int | None = None, *, all_projects: bool = False,
                  limit: int = 500) -> list[ChatSession]:  # fmt: skip
    """Sessions, most recently used first: a project's, those in no project (None), or every one."""
    query = select(ChatSession)
    if not all_projects:
        query = query.where(ChatSession.project_id == project_id if project_id is not None
                            else col(ChatSession.project_id).is_(None))  # fmt: skip
    query = query.order_by(col(ChatSession.updated_at).desc(), col(ChatSession.id).desc()).limit(limit)
    return list(session.exec(query))


def load_session(session: Session, session_id: int) -> tuple[ChatSession, list[ChatMessage]]:
    """A session and its messages, oldest first."""
    chat = get_session(session, session_id)
    messages = session.exec(select(ChatMessage).where(ChatMessage.session_id == session_id)
                            .order_by(col(ChatMessage.id)))  # fmt: skip
    return chat, list(messages)


def project_name(session: Session, chat: ChatSession) -> str | None:
    """The name of the project a session belongs to, if any."""
    if chat.project_id is None:
        return None
    project = session.get(Project, chat.project_id)
    return project.name if project is not None else None


def delete_messages_from(session: Session, session_id: int, message_id: int) -> int:
    """Delete message `message_id` and every later one of the session (regenerate, edit); returns how many."""
    chat = get_session(session, session_id)
    result = session.exec(delete(ChatMessage).where(ChatMessage.session_id == session_id,
                                                    col(ChatMessage.id) >= message_id))  # fmt: skip
    chat.updated_at = now()
    session.add(chat)
    session.flush()
    return int(result.rowcount or 0)


def delete_session(session: Session, session_id: int) -> None:
    """Delete a session with its messages."""
    chat = get_session(session, session_id)
    session.exec(delete(ChatMessage).where(ChatMessage.session_id == session_id))
    session.delete(chat)
    session.flush()


@dataclass(frozen=True)
class SessionSummary:
    """One line of the saved-sessions list."""

    id: int
    title: str
    model_path: str
    updated_at: float
    project: str | None
    messages: int


SESSION_SUMMARIES_SQL = """
SELECT s.id, s.title, s.model_path, s.updated_at, p.name,
    (SELECT count(*) FROM chat_messages m WHERE m.session_id = s.id)
FROM chat_sessions s LEFT JOIN projects p ON p.id = s.project_id
ORDER BY s.updated_at DESC, s.id DESC
LIMIT ?
"""


def session_summaries(conn: sqlite3.Connection, limit: int = 500) -> list[SessionSummary]:
    """Every session (all projects and none), most recently used first, with its project and message count."""
    return [SessionSummary(*row) for row in conn.execute(SESSION_SUMMARIES_SQL, (limit,))]
