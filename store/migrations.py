"""Ordered forward migrations; the schema version lives in SQLite's `user_version`.

Each migration is a list of SQL statements run in one `BEGIN IMMEDIATE` transaction
together with the version bump, so a database is always at exactly one version.
Never edit a released migration: append a new one.
"""

from __future__ import annotations

import sqlite3

from store.errors import SchemaError

V1 = [
    """CREATE TABLE projects (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE datasets (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        format TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT '',
        path TEXT NOT NULL DEFAULT '',
        num_train INTEGER NOT NULL DEFAULT 0,
        num_val INTEGER NOT NULL DEFAULT 0,
        content_hash TEXT NOT NULL DEFAULT '',
        lint JSON NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        UNIQUE (project_id, name)
    )""",
    """CREATE TABLE jobs (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN
            ('queued', 'running', 'completed', 'failed', 'cancelled', 'interrupted')),
        config JSON NOT NULL DEFAULT '{}',
        pid INTEGER,
        heartbeat_at REAL,
        progress REAL NOT NULL DEFAULT 0,
        step INTEGER NOT NULL DEFAULT 0,
        total_steps INTEGER,
        error TEXT,
        log_path TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        updated_at REAL NOT NULL
    )""",
    "CREATE INDEX ix_jobs_project ON jobs (project_id, kind)",
    "CREATE INDEX ix_jobs_status ON jobs (status)",
    """CREATE TABLE metrics (
        id INTEGER PRIMARY KEY,
        job_id INTEGER NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        name TEXT NOT NULL,
        value REAL NOT NULL,
        created_at REAL NOT NULL,
        UNIQUE (job_id, step, name)
    )""",
    """CREATE TABLE artifacts (
        id INTEGER PRIMARY KEY,
        project_id INTEGER NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        job_id INTEGER REFERENCES jobs(id) ON DELETE SET NULL,
        parent_id INTEGER REFERENCES artifacts(id) ON DELETE SET NULL,
        kind TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        path TEXT NOT NULL,
        size INTEGER NOT NULL DEFAULT 0,
        sha256 TEXT NOT NULL DEFAULT '',
        meta JSON NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX ix_artifacts_project ON artifacts (project_id)",
    "CREATE INDEX ix_datasets_project ON datasets (project_id)",
]

# v2: chat sessions for the chat pane, and an index that keeps the TUI's
# "jobs changed since T" poll cheap with many jobs.
V2 = [
    """CREATE TABLE chat_sessions (
        id INTEGER PRIMARY KEY,
        project_id INTEGER REFERENCES projects(id) ON DELETE CASCADE,
        artifact_id INTEGER REFERENCES artifacts(id) ON DELETE SET NULL,
        model_path TEXT NOT NULL,
        title TEXT NOT NULL DEFAULT '',
        params JSON NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    )""",
    """CREATE TABLE chat_messages (
        id INTEGER PRIMARY KEY,
        session_id INTEGER NOT NULL REFERENCES chat_sessions(id) ON DELETE CASCADE,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        timing JSON NOT NULL DEFAULT '{}',
        created_at REAL NOT NULL
    )""",
    "CREATE INDEX ix_chat_messages_session ON chat_messages (session_id, id)",
    "CREATE INDEX ix_jobs_updated ON jobs (updated_at)",
]

# v3: what the runner and engine need: a resource slot per job (one runner per slot),
# a cancel request the engine polls, and a JSON result (ids of what the job made).
V3 = [
    "ALTER TABLE jobs ADD COLUMN slot TEXT NOT NULL DEFAULT 'cpu'",
    "ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE jobs ADD COLUMN result JSON NOT NULL DEFAULT '{}'",
    "CREATE INDEX ix_jobs_slot_queue ON jobs (slot, status, id)",
]

# v4: a queue position per job, so a queued job can be moved up or down its slot's queue. NULL (every job
# made before, and new ones) means "where its id puts it": runners take coalesce(queue_pos, id), then id.
V4 = [
    "ALTER TABLE jobs ADD COLUMN queue_pos REAL",
]

V5 = [
    # the decision guide's answers and verdict (fine-tune, rag or prompting), {} when it was skipped
    "ALTER TABLE projects ADD COLUMN guide JSON NOT NULL DEFAULT '{}'",
]

MIGRATIONS: list[list[str]] = [V1, V2, V3, V4, V5]
SCHEMA_VERSION = len(MIGRATIONS)


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the database file."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Bring the database up to `target`, one migration per transaction; returns the new version.

    `conn` must be in autocommit mode (`isolation_level=None`). Two processes
    opening a fresh store at once are safe: BEGIN IMMEDIATE serializes them and
    the version is re-read inside the transaction.
    """
    if target > SCHEMA_VERSION:
        raise SchemaError(f"no migration to schema version {target} (latest is {SCHEMA_VERSION})")
    version = current_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaError(
            f"the database has schema version {version}, newer than this tunedeck "
            f"understands ({SCHEMA_VERSION}); upgrade tunedeck"
        )
    while version < target:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = current_version(conn)
            if version >= target:
                conn.execute("COMMIT")
                break
            for statement in MIGRATIONS[version]:
                conn.execute(statement)
            version += 1
            conn.execute(f"PRAGMA user_version = {version}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return version
