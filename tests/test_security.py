"""Security basics: no shell strings anywhere, trust_remote_code off unless asked, tokens never written."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
from conftest import ROOT, copy_home, run_cli

SOURCES = [p for d in ("store", "engine", "tui", "scripts") for p in sorted((ROOT / d).rglob("*.py"))]


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_shell_commands(path: Path) -> None:
    """No shell=True, os.system or os.popen: user input never reaches a shell."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            assert func not in {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}, (
                f"{path}:{node.lineno}: {func}")
            for kw in node.keywords:
                if kw.arg == "shell":
                    assert isinstance(kw.value, ast.Constant) and kw.value.value is False, (
                        f"{path}:{node.lineno}: shell={ast.unparse(kw.value)}")


def test_trust_remote_code_is_off_by_default_and_recorded() -> None:
    from engine.train.config import RunConfig
    from engine.train.presets import PRESETS, preset_config

    assert RunConfig().trust_remote_code is False
    assert all(preset_config(name).trust_remote_code is False for name in PRESETS)


@pytest.mark.slow
def test_hf_token_never_written(tmp_path: Path) -> None:
    """A token in the environment appears in no file tunedeck writes (store, logs, snapshots, exports)."""
    secret = "hf_" + "Zq9" * 12
    env = {"HF_TOKEN": secret, "HUGGING_FACE_HUB_TOKEN": secret}
    home = tmp_path / "home"
    assert run_cli("demo", home=home, env=env, timeout=600).returncode == 0
    run = run_cli("run", "new", "demo", "--preset", "smoke", "--set", "max_steps=2", "--wait", "--json",
                  home=home, env=env, timeout=600)
    assert json.loads(run.stdout)["status"] == "completed", run.stderr
    job_id = json.loads(run.stdout)["id"]
    export = tmp_path / "run.yaml"
    assert run_cli("run", "export", str(job_id), "-o", str(export), home=home, env=env).returncode == 0
    written = [p for p in home.rglob("*") if p.is_file()] + [export]
    assert len(written) > 10
    for path in written:
        assert secret.encode() not in path.read_bytes(), f"token found in {path}"
    assert oct(os.stat(home).st_mode & 0o777) == "0o700"
    assert oct(os.stat(home / "tunedeck.db").st_mode & 0o777) == "0o600"


@pytest.mark.slow
def test_hostile_names_reach_the_engine_as_plain_data(tmp_path: Path, demo_home_src: Path) -> None:
    """Shell syntax in a data file's path, a model folder's path and a run's name goes through the CLI, the queue,
    the runner and the engine process as data: the run completes, the names are stored verbatim and no command
    in them ran."""
    import shutil

    home = copy_home(demo_home_src, tmp_path / "home")
    # The trap is relative (an absolute one can make a name over 255 bytes in a deep temp folder): run, it would
    # leave a PWNED file in the working folder of the process that ran it (the suite's root or the home).
    folder = tmp_path / "in $(touch PWNED); `touch PWNED` | touch PWNED & x'\"*?"
    folder.mkdir()
    from engine.demo import write_demo_dataset

    data = folder / "data; rm -rf ~.jsonl"
    write_demo_dataset(data, n=40, seed=3)
    imported = run_cli("dataset", "add", "demo", str(data), "--name", "hostile-data", home=home, timeout=300)
    assert imported.returncode == 0, imported.stderr
    shown = json.loads(run_cli("project", "show", "demo", "--json", home=home).stdout)
    model = folder / "model $(id)"
    shutil.copytree(next(a["path"] for a in shown["artifacts_list"] if a["kind"] == "model"), model)
    name = "run $(touch x) `id`; echo"
    run = run_cli("run", "new", "demo", "--preset", "smoke", "--dataset", "hostile-data", "--model", str(model),
                  "--set", "max_steps=2", "--set", "eval_steps=0", "--set", f"name={name}", "--wait", "--json",
                  home=home, timeout=600)
    assert run.returncode == 0, run.stderr
    done = json.loads(run.stdout)
    assert done["status"] == "completed" and done["name"] == name
    assert done["config"]["model_path"] == str(model.resolve())
    assert not list(tmp_path.rglob("x"))
    assert not list(tmp_path.rglob("PWNED")) and not (ROOT / "PWNED").exists()
