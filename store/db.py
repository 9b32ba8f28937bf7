"""Opening the store, and SQLModel sessions over it.

SQLAlchemy is imported on first use of `read()`/`write()`, not when the store opens:
`raw()` serves the cheap, plain-SQL reads of `store.views` without it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.diskfull import DiskFull, disk_full_message, sqlite_full
from store.home import DB_NAME
from store.sqlite import BUSY_TIMEOUT_MS, apply_pragmas, connect, prepare_database

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlmodel import Session


def _make_engine(path: Path) -> Engine:
    from sqlalchemy import event
    from sqlmodel import create_engine

    engine = create_engine(
        f"sqlite:///{path}",
        connect_args={"check_same_thread": False, "timeout": BUSY_TIMEOUT_MS / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN is ours.
        dbapi_conn.isolation_level = None
        apply_pragmas(dbapi_conn)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get("tunedeck_write"):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


class Store:
    """A tunedeck home's database.

    Reads use deferred transactions; `write()` sessions start with BEGIN IMMEDIATE so
    a writer waits for the lock up front (honouring busy_timeout) instead of failing
    with "database is locked" when it upgrades a read lock.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / DB_NAME
        self._engine: Engine | None = None
        self._write_engine: Engine | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine, made (and SQLAlchemy imported) on first use."""
        with self._lock:
            if self._engine is None:
                self._engine = _make_engine(self.path)
                self._write_engine = self._engine.execution_options(tunedeck_write=True)
            return self._engine

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries; closing it ends the read transaction.

        Objects loaded through it stay readable afterwards (close detaches, it does not expire).
        """
        from sqlmodel import Session

        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A short write transaction: committed on success, rolled back on any error (a full disk comes out
        as DiskFull naming the database)."""
        from sqlmodel import Session

        self.engine  # noqa: B018 - makes _write_engine
        with Session(self._write_engine, expire_on_commit=False) as session:
            try:
                yield session
                session.commit()
            except BaseException as exc:
                session.rollback()
                if isinstance(exc, Exception) and sqlite_full(exc):
                    raise DiskFull(disk_full_message(self.path)) from exc
                raise

    @contextmanager
    def raw(self) -> Iterator[sqlite3.Connection]:
        """A plain sqlite3 connection (autocommit) for `store.views` reads; closed afterwards."""
        conn = connect(self.path)
        try:
            yield conn
        finally:
            conn.close()

    def close(self) -> None:
        """Release the connection pool."""
        if self._engine is not None:
            self._engine.dispose()


def open_store(home: str | os.PathLike[str] | None = None, *, migrate_to: int | None = None) -> Store:
    """Open (creating if needed) the store of `home`, resolved like `--home`/TUNEDECK_HOME.

    The database is put in WAL mode and migrated forward to the current schema
    (or to `migrate_to`, which tests use to build an old database).
    """
    return Store(prepare_database(home, migrate_to))
