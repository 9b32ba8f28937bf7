"""The database file at the sqlite3 level: creation with safe modes, pragmas, WAL, migrations,
and plain connections for cheap reads. Uses only the standard library, so a process that
only reads (the TUI's first frame) never pays for importing SQLAlchemy."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from store.diskfull import DiskFull, disk_full_message, nearly_full
from store.errors import SchemaError
from store.home import DB_NAME, ensure_home, resolve_home
from store.migrations import migrate

BUSY_TIMEOUT_MS = 30_000


def apply_pragmas(conn: sqlite3.Connection) -> None:
    """Per-connection settings every tunedeck connection uses."""
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")


def _create_db_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does, so it never exists with wider modes."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def prepare_database(home: str | os.PathLike[str] | None = None, migrate_to: int | None = None) -> Path:
    """Resolve and create the home, create the database if missing, put it in WAL mode and
    migrate it forward (to `migrate_to`, tests only). Returns the home."""
    root = ensure_home(resolve_home(home))
    path = root / DB_NAME
    if not path.exists():
        _create_db_file(path)
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        try:
            apply_pragmas(conn)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            if nearly_full(root) and "not a database" not in str(exc):  # WAL needs room for its -shm file
                raise DiskFull(disk_full_message(path.with_name(path.name + "-shm"),
                                                 "SQLite needs a little room even to read the store")) from None
            raise SchemaError(f"{path} is not a tunedeck database ({exc})") from None
        if str(mode).lower() != "wal":
            raise SchemaError(f"could not put {path} in WAL mode (got {mode})")
        if migrate_to is None:
            migrate(conn)
        else:
            migrate(conn, migrate_to)
    finally:
        conn.close()
    for sidecar in ("-wal", "-shm"):
        side = path.with_name(path.name + sidecar)
        if side.exists():
            os.chmod(side, 0o600)
    return root


def connect(path: Path) -> sqlite3.Connection:
    """A plain connection in autocommit mode with tunedeck's pragmas (usable from any thread)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    apply_pragmas(conn)
    return conn
