"""The `tunedeck` command line: project verbs, --home/TUNEDECK_HOME, errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli

from cli.main import main


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_verbs(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "project" in out and "demo" in out and "--home" in out


def test_console_script_help() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    assert "project" in result.stdout


def test_project_lifecycle(capsys, home: Path) -> None:
    h = str(home)
    assert cli(capsys, "--home", h, "project", "create", "alpha", "--description", "first")[0] == 0
    code, out, _ = cli(capsys, "project", "list", "--home", h, "--json")
    assert code == 0
    [row] = json.loads(out)
    assert row["name"] == "alpha" and row["description"] == "first"
    assert (row["datasets"], row["runs"], row["artifacts"]) == (0, 0, 0)
    code, out, _ = cli(capsys, "--home", h, "project", "list")
    assert code == 0 and "alpha" in out and "DATASETS" in out
    code, out, _ = cli(capsys, "--home", h, "project", "show", "alpha", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["name"] == "alpha" and shown["jobs"] == []
    code, out, _ = cli(capsys, "--home", h, "project", "show", "alpha")
    assert code == 0 and "project alpha" in out and "first" in out
    code, out, _ = cli(capsys, "--home", h, "project", "rename", "alpha", "beta")
    assert code == 0 and out.strip() == "project alpha is now beta"
    code, out, _ = cli(capsys, "--home", h, "project", "show", "beta", "--json")
    assert json.loads(out)["id"] == shown["id"] and json.loads(out)["description"] == "first"
    assert cli(capsys, "--home", h, "project", "create", "gamma")[0] == 0
    code, _, err = cli(capsys, "--home", h, "project", "rename", "beta", "gamma")
    assert code == 1 and err.strip() == "error: project 'gamma' already exists"
    code, _, err = cli(capsys, "--home", h, "project", "rename", "beta", "../x")
    assert code == 1 and "must not contain a path separator" in err
    assert cli(capsys, "--home", h, "project", "delete", "gamma")[0] == 0
    assert cli(capsys, "--home", h, "project", "delete", "beta")[0] == 0
    code, out, _ = cli(capsys, "--home", h, "project", "list", "--json")
    assert json.loads(out) == []


def test_tunedeck_home_env(capsys, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TUNEDECK_HOME", str(tmp_path / "envhome"))
    assert cli(capsys, "project", "create", "p")[0] == 0
    assert (tmp_path / "envhome" / "tunedeck.db").exists()
    # --home wins over the environment
    assert cli(capsys, "--home", str(tmp_path / "flag"), "project", "create", "q")[0] == 0
    assert (tmp_path / "flag" / "tunedeck.db").exists()


def test_default_home_is_xdg(capsys, tmp_path: Path) -> None:
    assert cli(capsys, "project", "create", "p")[0] == 0
    assert (tmp_path / "xdg-data" / "tunedeck" / "tunedeck.db").exists()


def test_delete_refuses_project_with_runs(capsys, home: Path, store) -> None:
    from store.jobs import create_job, transition
    from store.projects import create_project

    with store.write() as session:
        pid = create_project(session, "busy").id
        job_id = create_job(session, pid, "train").id
    (home / "jobs" / str(job_id)).mkdir(parents=True)
    h = str(home)
    code, _, err = cli(capsys, "--home", h, "project", "delete", "busy")
    assert code == 1
    assert err.strip() == "error: project 'busy' has 1 queued or running job(s); cancel them first"
    with store.write() as session:
        transition(session, job_id, "cancelled")
    code, _, err = cli(capsys, "--home", h, "project", "delete", "busy")
    assert code == 1
    assert err.strip() == "error: project 'busy' has 1 run(s); pass --force to delete it with them"
    code, out, _ = cli(capsys, "--home", h, "project", "delete", "busy", "--force")
    assert code == 0 and "deleted project busy" in out
    assert not (home / "jobs" / str(job_id)).exists()


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["project", "show", "nope"], 1, "error: no project named 'nope' (see `tunedeck project list`)"),
        (["project", "delete", "nope"], 1, "error: no project named 'nope' (see `tunedeck project list`)"),
        (["project", "rename", "nope", "new"], 1, "error: no project named 'nope' (see `tunedeck project list`)"),
        (["project", "create", "a/b"], 1, "error: project name 'a/b' must not contain a path separator"),
        (["project", "create", ".."], 1, "error: project name '..' is not allowed"),
        (["project", "create", "  "], 1, "error: project name must not be empty"),
        (["project", "create", "x" * 300], 1, "error: project name is 300 characters long; the limit is 64"),
        (["project", "create", "bad\x07name"], 1, "contains a control character (U+0007)"),
        (["bogus"], 2, "invalid choice: 'bogus'"),
        (["project"], 2, "the following arguments are required: ACTION"),
        (["project", "create"], 2, "the following arguments are required: name"),
        (["project", "list", "--colour"], 2, "unrecognized arguments: --colour"),
    ],
)
def test_error_paths(capsys, home: Path, args: list[str], code: int, message: str) -> None:
    got, out, err = cli(capsys, "--home", str(home), *args)
    assert got == code
    assert message in err
    assert "Traceback" not in err and out == ""


def test_duplicate_project(capsys, home: Path) -> None:
    h = str(home)
    assert cli(capsys, "--home", h, "project", "create", "dup")[0] == 0
    code, _, err = cli(capsys, "--home", h, "project", "create", "dup")
    assert code == 1 and err.strip() == "error: project 'dup' already exists"


def test_home_that_is_a_file(capsys, tmp_path: Path) -> None:
    target = tmp_path / "afile"
    target.write_text("x")
    code, _, err = cli(capsys, "--home", str(target), "project", "list")
    assert code == 1 and f"tunedeck home {target} exists and is not a directory" in err


def test_corrupt_database_message_and_debug(tmp_path: Path) -> None:
    home = tmp_path / "h"
    home.mkdir()
    (home / "tunedeck.db").write_bytes(b"garbage" * 1000)
    result = run_cli("project", "list", home=home)
    assert result.returncode == 1
    assert "is not a tunedeck database" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("--debug", "project", "list", home=home)
    assert result.returncode == 1 and "Traceback" in result.stderr


@pytest.mark.slow
def test_demo_creates_project_model_and_data(home: Path) -> None:
    result = run_cli("demo", "--json", home=home, timeout=300)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    model = Path(info["model"]["path"])
    assert model.parent == home / "models" and (model / "config.json").exists()
    data = Path(info["data"]["path"])
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    assert len(rows) == 400 and {"instruction", "input", "output"} <= set(rows[0])
    shown = json.loads(run_cli("project", "show", "demo", "--json", home=home).stdout)
    kinds = sorted(a["kind"] for a in shown["artifacts_list"])
    assert kinds == ["data", "model"]
    assert all(len(a["sha256"]) == 64 and a["size"] > 0 for a in shown["artifacts_list"])
    again = run_cli("demo", "--json", home=home, timeout=300)  # idempotent: same rows, nothing rebuilt
    assert again.returncode == 0 and json.loads(again.stdout) == info


def test_project_create_records_the_guide_verdict_and_show_prints_it(capsys, home: Path) -> None:
    code, out, _ = cli(capsys, "--home", str(home), "project", "create", "faq", "--guide-verdict", "rag")
    assert code == 0 and "guide verdict rag" in out
    code, out, _ = cli(capsys, "--home", str(home), "project", "show", "faq")
    assert code == 0 and "decision guide: rag" in out
    code, out, _ = cli(capsys, "--home", str(home), "project", "show", "faq", "--json")
    assert json.loads(out)["guide"] == {"verdict": "rag", "source": "command line"}
    cli(capsys, "--home", str(home), "project", "create", "plain")
    code, out, _ = cli(capsys, "--home", str(home), "project", "show", "plain")
    assert "decision guide: skipped" in out
    code, _, err = cli(capsys, "--home", str(home), "project", "create", "x", "--guide-verdict", "train")
    assert code != 0 and "invalid choice: 'train'" in err


def test_store_refuses_a_guide_without_a_known_verdict(store) -> None:
    from store.errors import TunedeckError
    from store.projects import create_project, get_project, set_project_guide

    with store.write() as session:
        create_project(session, "p")
    for bad, message in (({"verdict": "train"}, "guide verdict 'train': expected one of fine-tune, rag, prompting"),
                         ({"verdict": "rag", "checklist": ["pii"]}, "guide checklist: expected a mapping")):
        with pytest.raises(TunedeckError, match=message.replace("(", r"\(")):
            with store.write() as session:
                set_project_guide(session, "p", bad)
    with store.read() as session:
        assert get_project(session, "p").guide == {}  # nothing half-written
