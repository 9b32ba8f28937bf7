"""The suite's shared homes: a copy made with `copy_home` is a home of its own, with nothing left pointing at
(or written to) the session's read-only original."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from conftest import copy_home, run_cli


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def test_a_copied_home_points_only_at_itself(demo_home_src: Path, tmp_path: Path) -> None:
    before = _files(demo_home_src)
    copy = copy_home(demo_home_src, tmp_path / "copy")
    with sqlite3.connect(copy / "tunedeck.db") as conn:
        texts = [str(v) for table in ("projects", "datasets", "jobs", "artifacts")
                 for row in conn.execute(f"SELECT * FROM {table}") for v in row if isinstance(v, str)]
    assert texts and not [t for t in texts if str(demo_home_src) in t]
    shown = json.loads(run_cli("project", "show", "demo", "--json", home=copy).stdout)
    paths = [Path(a["path"]) for a in shown["artifacts_list"]]
    assert paths and all(p.is_relative_to(copy) and p.exists() for p in paths), paths
    dataset = json.loads(run_cli("dataset", "show", "demo", "--json", home=copy).stdout)
    assert Path(dataset["path"]).is_relative_to(copy) and Path(dataset["path"]).exists()
    # the copy takes a new project; the original holds still
    assert run_cli("project", "create", "second", home=copy).returncode == 0
    assert _files(demo_home_src) == before
