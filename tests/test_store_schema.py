"""The store's schema: migrations, pragmas, permissions, and the models matching the DDL."""

from __future__ import annotations

import sqlite3
import stat
import threading
from pathlib import Path

import pytest
from sqlmodel import SQLModel, select

from store import migrations
from store.db import open_store
from store.errors import SchemaError
from store.home import resolve_home
from store.models import ChatMessage, ChatSession, Job, Metric, Project


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_resolution_order(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert resolve_home() == tmp_path / "xdg" / "tunedeck"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert resolve_home() == tmp_path / "user" / ".local" / "share" / "tunedeck"
    monkeypatch.setenv("TUNEDECK_HOME", str(tmp_path / "env-home"))
    assert resolve_home() == tmp_path / "env-home"
    assert resolve_home(tmp_path / "flag") == tmp_path / "flag"


def test_home_and_database_permissions(home: Path) -> None:
    s = open_store(home)
    with s.write() as session:
        session.add(Project(name="p"))
    assert _mode(home) == 0o700
    assert _mode(home / "tunedeck.db") == 0o600
    for side in home.glob("tunedeck.db-*"):
        assert _mode(side) == 0o600, side
    s.close()


def test_pragmas(store) -> None:
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 5000
        assert conn.exec_driver_sql("PRAGMA user_version").scalar() == migrations.SCHEMA_VERSION


def test_models_match_migrated_schema(store) -> None:
    """Every SQLModel table and column exists in the migrated database with the same nullability."""
    with sqlite3.connect(store.path) as conn:
        for table in SQLModel.metadata.sorted_tables:
            info = {row[1]: row for row in conn.execute(f"PRAGMA table_info({table.name})")}
            assert info, f"table {table.name} missing from the migrations"
            assert set(info) == {c.name for c in table.columns}, table.name
            for column in table.columns:
                if not column.primary_key:
                    assert bool(info[column.name][3]) == (not column.nullable), (table.name, column.name)


def test_v1_database_survives_migration(home: Path) -> None:
    """A database made with the first schema opens with the current code, its data intact."""
    old = open_store(home, migrate_to=1)
    old.close()
    with sqlite3.connect(home / "tunedeck.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert not conn.execute("SELECT name FROM sqlite_master WHERE name = 'chat_sessions'").fetchall()
        conn.execute("INSERT INTO projects (name, description, created_at, updated_at) VALUES ('old', 'v1', 1, 2)")
        conn.execute(
            "INSERT INTO jobs (project_id, kind, status, config, created_at, updated_at) "
            "VALUES (1, 'train', 'completed', '{\"lr\": 0.0002}', 1, 2)"
        )
        conn.execute("INSERT INTO metrics (job_id, step, name, value, created_at) VALUES (1, 10, 'loss', 1.5, 3)")
    current = open_store(home)
    with current.read() as session:
        project = session.exec(select(Project)).one()
        job = session.exec(select(Job)).one()
        metric = session.exec(select(Metric)).one()
    assert (project.name, project.description) == ("old", "v1")
    assert job.config == {"lr": 0.0002} and job.status == "completed"
    assert (metric.step, metric.name, metric.value) == (10, "loss", 1.5)
    with current.write() as session:  # the v2 tables work on the migrated file
        chat = ChatSession(project_id=project.id, model_path="/m.gguf", params={"temperature": 0.7})
        session.add(chat)
        session.flush()
        session.add(ChatMessage(session_id=chat.id, role="user", content="hi"))
    with sqlite3.connect(home / "tunedeck.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == migrations.SCHEMA_VERSION
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    current.close()


def test_newer_schema_is_refused(home: Path) -> None:
    open_store(home).close()
    with sqlite3.connect(home / "tunedeck.db") as conn:
        conn.execute(f"PRAGMA user_version = {migrations.SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaError, match="newer than this tunedeck"):
        open_store(home)


def test_not_a_database_is_refused(home: Path) -> None:
    home.mkdir(mode=0o700)
    (home / "tunedeck.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(SchemaError, match="not a tunedeck database"):
        open_store(home)


def test_metrics_unique_per_job_step_name(store) -> None:
    from sqlalchemy.exc import IntegrityError

    with store.write() as session:
        project = Project(name="p")
        session.add(project)
        session.flush()
        job = Job(project_id=project.id, kind="train")
        session.add(job)
        session.flush()
        session.add(Metric(job_id=job.id, step=1, name="loss", value=1.0))
        session.add(Metric(job_id=job.id, step=1, name="lr", value=1e-4))
    with pytest.raises(IntegrityError), store.write() as session:
        session.add(Metric(job_id=job.id, step=1, name="loss", value=2.0))
    with store.read() as session:
        assert [m.value for m in session.exec(select(Metric).where(Metric.name == "loss"))] == [1.0]


def test_foreign_keys_cascade(store) -> None:
    from sqlalchemy import text

    with store.write() as session:
        project = Project(name="p")
        session.add(project)
        session.flush()
        job = Job(project_id=project.id, kind="train")
        session.add(job)
        session.flush()
        session.add(Metric(job_id=job.id, step=1, name="loss", value=1.0))
    with store.write() as session:
        session.execute(text("DELETE FROM projects"))
    with store.read() as session:
        assert session.exec(select(Metric)).all() == []
        assert session.exec(select(Job)).all() == []


def test_concurrent_openers_and_writers(home: Path) -> None:
    """Several threads opening a fresh store and writing at once: no 'database is locked', nothing lost."""
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            s = open_store(home)
            for i in range(25):
                with s.write() as session:
                    session.add(Project(name=f"w{n}-{i}"))
            s.close()
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    s = open_store(home)
    with s.read() as session:
        assert len(session.exec(select(Project)).all()) == 100
    s.close()
