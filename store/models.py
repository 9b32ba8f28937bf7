"""The store's tables as SQLModel classes.

The DDL that creates them lives in `store.migrations`, which is the contract;
`tests/test_store_schema.py` checks that these classes and the migrated schema agree.
Times are UNIX epoch seconds (REAL) so "what changed since" queries are plain comparisons.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel


def now() -> float:
    """Current time as stored in the database."""
    return time.time()


class JobStatus(StrEnum):
    """Lifecycle of every long task; see `store.jobs` for the allowed moves."""

    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"
    interrupted = "interrupted"


class Project(SQLModel, table=True):
    __tablename__ = "projects"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(unique=True)
    description: str = ""
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)
    # the decision guide: {"verdict": fine-tune/rag/prompting, "answers": {...}, "checklist": {...}}; {} if skipped
    guide: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Dataset(SQLModel, table=True):
    __tablename__ = "datasets"

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id", ondelete="CASCADE")
    name: str
    format: str = ""
    source: str = ""
    path: str = ""
    num_train: int = 0
    num_val: int = 0
    content_hash: str = ""
    lint: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: float = Field(default_factory=now)


class Job(SQLModel, table=True):
    __tablename__ = "jobs"

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id", ondelete="CASCADE")
    kind: str
    name: str = ""
    status: str = JobStatus.queued.value
    config: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    pid: int | None = None
    heartbeat_at: float | None = None
    progress: float = 0.0
    step: int = 0
    total_steps: int | None = None
    error: str | None = None
    log_path: str | None = None
    created_at: float = Field(default_factory=now)
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = Field(default_factory=now)
    slot: str = "cpu"
    cancel_requested: bool = False
    result: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    queue_pos: float | None = None  # None: its id is its place in the queue (see store.jobs.queue_order)


class Metric(SQLModel, table=True):
    __tablename__ = "metrics"

    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="jobs.id", ondelete="CASCADE")
    step: int
    name: str
    value: float
    created_at: float = Field(default_factory=now)


class Artifact(SQLModel, table=True):
    __tablename__ = "artifacts"

    id: int | None = Field(default=None, primary_key=True)
    project_id: int = Field(foreign_key="projects.id", ondelete="CASCADE")
    job_id: int | None = Field(default=None, foreign_key="jobs.id", ondelete="SET NULL")
    parent_id: int | None = Field(default=None, foreign_key="artifacts.id", ondelete="SET NULL")
    kind: str
    name: str = ""
    path: str
    size: int = 0
    sha256: str = ""
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: float = Field(default_factory=now)


class ChatSession(SQLModel, table=True):
    __tablename__ = "chat_sessions"

    id: int | None = Field(default=None, primary_key=True)
    project_id: int | None = Field(default=None, foreign_key="projects.id", ondelete="CASCADE")
    artifact_id: int | None = Field(default=None, foreign_key="artifacts.id", ondelete="SET NULL")
    model_path: str
    title: str = ""
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)


class ChatMessage(SQLModel, table=True):
    __tablename__ = "chat_messages"

    id: int | None = Field(default=None, primary_key=True)
    session_id: int = Field(foreign_key="chat_sessions.id", ondelete="CASCADE")
    role: str
    content: str
    timing: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: float = Field(default_factory=now)
