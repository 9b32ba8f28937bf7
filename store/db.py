"""Opening the store: file permissions, SQLite pragmas, migrations and sessions."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, create_engine

from store.errors import SchemaError
from store.home import DB_NAME, ensure_home, resolve_home
from store.migrations import migrate

BUSY_TIMEOUT_MS = 30_000


def _create_db_file(path: Path) -> None:
    """Create the database file 0600 before SQLite does, so it never exists with wider modes."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)
    os.chmod(path, 0o600)


def _apply_pragmas(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = NORMAL")


class Store:
    """A tunedeck home's database.

    Reads use deferred transactions; `write()` sessions start with BEGIN IMMEDIATE so
    a writer waits for the lock up front (honouring busy_timeout) instead of failing
    with "database is locked" when it upgrades a read lock.
    """

    def __init__(self, home: Path, engine: Engine) -> None:
        self.home = home
        self.path = home / DB_NAME
        self.engine = engine
        self._write_engine = engine.execution_options(tunedeck_write=True)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries; closing it ends the read transaction.

        Objects loaded through it stay readable afterwards (close detaches, it does not expire).
        """
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A short write transaction: committed on success, rolled back on any error."""
        with Session(self._write_engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()


def _make_engine(path: Path) -> Engine:
    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN is ours.
        dbapi_conn.isolation_level = None
        _apply_pragmas(dbapi_conn)

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        if conn.get_execution_options().get("tunedeck_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def open_store(home: str | os.PathLike[str] | None = None, *, migrate_to: int | None = None) -> Store:
    """Open (creating if needed) the store of `home`, resolved like `--home`/TUNEDECK_HOME.

    The database is put in WAL mode and migrated forward to the current schema
    (or to `migrate_to`, which tests use to build an old database).
    """
    root = ensure_home(resolve_home(home))
    path = root / DB_NAME
    if not path.exists():
        _create_db_file(path)
    conn = sqlite3.connect(path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        try:
            _apply_pragmas(conn)
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.DatabaseError as exc:
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
    return Store(root, _make_engine(path))
