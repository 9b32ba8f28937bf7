"""DESIGN.md's layering, enforced on the source and at run time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "transformers", "peft", "trl", "llama_cpp", "bitsandbytes", "datasets", "accelerate"}


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level?) for every import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    out: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(child, ast.Import):
                out.extend((alias.name.split(".")[0], not in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                out.append((child.module.split(".")[0], not in_function))
            elif isinstance(child, ast.If) and _is_type_checking(child):
                continue  # typing-only imports never execute
            visit(child, inside)

    visit(tree, False)
    return out


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _files("store"), ids=str)
def test_store_imports_nothing_above_it(path: Path) -> None:
    bad = {m for m, _ in _imports(path) if m in {"engine", "tui", "cli", "core"} | HEAVY}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


@pytest.mark.parametrize("path", _files("engine"), ids=str)
def test_engine_never_imports_tui(path: Path) -> None:
    bad = {m for m, top in _imports(path) if m in {"tui", "cli"} or (top and m in HEAVY)}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)} (heavy imports go inside functions)"


@pytest.mark.parametrize("path", _files("tui") + _files("cli") + _files("core"), ids=str)
def test_tui_imports_engine_and_heavy_only_in_functions(path: Path) -> None:
    bad = {m for m, top in _imports(path) if top and m in HEAVY | {"engine"}}
    assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)} at module level"


def test_checker_sees_violations(tmp_path: Path) -> None:
    """The checker itself catches a module-level import and ignores a function-level one."""
    sample = tmp_path / "m.py"
    sample.write_text("import torch\nfrom engine import x\n\ndef f():\n    import trl\n")
    assert _imports(sample) == [("torch", True), ("engine", True), ("trl", False)]


def test_startup_imports_nothing_heavy() -> None:
    """Importing the CLI, the app and every screen loads no ML library and no engine module."""
    code = (
        "import sys, pkgutil, importlib, tui, cli.main, tui.app\n"
        "import tui.screens\n"
        "for m in pkgutil.walk_packages(tui.screens.__path__, 'tui.screens.'): importlib.import_module(m.name)\n"
        "import store.db, store.projects, store.jobs\n"
        f"heavy = {sorted(HEAVY | {'engine'})!r}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_startup_defers_sqlalchemy() -> None:
    """The first frame reads through plain sqlite3 (store.views); SQLAlchemy loads on the first write.

    This keeps `tunedeck` within 1.5x of a bare Textual app (scripts/bench/startup.py).
    """
    code = (
        "import sys, cli.main, tui.app, store.db, store.views\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'sqlmodel'}))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
