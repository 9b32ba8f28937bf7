"""`tunedeck chat` in a subprocess with the real SmolLM2 GGUF: one answer (JSON or streamed text), the prompt loop
on stdin, the saved session, and bad model files ending with one line on stderr, exit 1 and no rows."""

# ruff: noqa: F811 - the chat_models fixtures are imported, then named as test arguments

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from chat_models import (  # noqa: F401 - fixtures, used as test arguments
    PROMPT,
    cut_header_gguf,
    not_gguf,
    smollm,
    truncated_gguf,
    unknown_arch_gguf,
)
from conftest import ROOT, run_cli

ONE_THREAD = ("--threads", "1")  # steady on a shared 2-core machine


def _rows(home: Path, table: str) -> int:
    db = home / "tunedeck.db"
    if not db.exists():
        return 0
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def test_one_answer_as_json(home: Path, smollm: Path) -> None:
    result = run_cli("chat", str(smollm), "--prompt", PROMPT, "--temperature", "0", "--json", *ONE_THREAD, home=home)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # llama.cpp's log stays out of the terminal
    data = json.loads(result.stdout)
    assert "Berlin" in data["answer"]
    assert data["prompt"] == PROMPT
    timing = data["timing"]
    assert timing["finish"] == "stop" and timing["tokens"] > 2 and timing["ttft_s"] > 0 and timing["tok_s"] > 0
    assert data["context"] == {"used": timing["prompt_tokens"] + timing["tokens"], "n_ctx": 4096}
    model = data["model"]
    assert (model["architecture"], model["file_type"], model["device"], model["template"]) == (
        "llama", "Q4_1", "CPU", "gguf")  # fmt: skip
    assert model["has_chat_template"] and data["warning"] is None
    # saved: the session with its parameters and both messages, the answer with its timing
    conn = sqlite3.connect(home / "tunedeck.db")
    params, path = conn.execute("SELECT params, model_path FROM chat_sessions WHERE id = ?",
                                (data["session_id"],)).fetchone()  # fmt: skip
    roles = conn.execute("SELECT role, timing FROM chat_messages WHERE session_id = ? ORDER BY id",
                         (data["session_id"],)).fetchall()  # fmt: skip
    conn.close()
    assert path == str(smollm.resolve()) and json.loads(params)["temperature"] == 0
    assert [r for r, _ in roles] == ["user", "assistant"]
    assert json.loads(roles[1][1])["tokens"] == timing["tokens"]


def test_one_answer_streamed_as_text(home: Path, smollm: Path) -> None:
    result = run_cli("chat", str(smollm), "--prompt", PROMPT, "--temperature", "0", "--no-save", *ONE_THREAD,
                     home=home)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Berlin" in result.stdout and result.stdout.endswith("\n")
    assert _rows(home, "chat_sessions") == 0  # --no-save


def test_prompt_loop_reads_stdin_until_eof(home: Path, smollm: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cli", "--home", str(home), "chat", str(smollm), "--temperature", "0",
         "--max-tokens", "40", "--json", *ONE_THREAD],
        input=f"{PROMPT}\n\nAnd the capital of France?\n", capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(answers) == 2  # the empty line asks nothing
    assert "Berlin" in answers[0]["answer"] and "Paris" in answers[1]["answer"]
    # the second answer saw the first exchange: one session, four messages
    assert answers[0]["session_id"] == answers[1]["session_id"]
    assert answers[1]["timing"]["prompt_tokens"] > answers[0]["context"]["used"]
    assert _rows(home, "chat_messages") == 4


@pytest.mark.parametrize("which", ["not_gguf", "truncated_gguf", "cut_header_gguf", "unknown_arch_gguf", "missing"])
def test_bad_model_is_one_line_on_stderr(which: str, home: Path, request: pytest.FixtureRequest) -> None:
    expected = {"not_gguf": "is not a GGUF file", "truncated_gguf": "truncated", "cut_header_gguf": "cannot be read",
                "unknown_arch_gguf": "does not know the model architecture", "missing": "no such file"}  # fmt: skip
    model = "/nonexistent/model.gguf" if which == "missing" else str(request.getfixturevalue(which))
    result = run_cli("chat", model, "--prompt", PROMPT, *ONE_THREAD, home=home)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected[which] in lines[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert _rows(home, "chat_sessions") == 0 and _rows(home, "chat_messages") == 0


def test_model_bigger_than_free_memory(home: Path, smollm: Path) -> None:
    result = run_cli("chat", str(smollm), "--prompt", PROMPT, "--cpu", *ONE_THREAD, home=home,
                     env={"TUNEDECK_FREE_MEMORY": str(10 * 1024 * 1024)})  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: SmolLM2-135M-Instruct.Q4_1.gguf is 93.8 MB but only 10.0 MB of memory "
                                     "is free; close other programs or pick a smaller quantization")  # fmt: skip
    assert _rows(home, "chat_sessions") == 0


def test_unknown_artifact_and_bad_params(home: Path, smollm: Path) -> None:
    result = run_cli("chat", "42", "--prompt", "hi", home=home)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: 42: no such file, and no GGUF artifact with that id or name"
    result = run_cli("chat", str(smollm), "--prompt", "hi", "--temperature", "-1", home=home)
    assert result.returncode == 1 and "temperature must be between 0 and 5" in result.stderr
    result = run_cli("chat", str(smollm), "--prompt", "hi", "--n-ctx", "0", home=home)
    assert result.returncode == 2 and "--n-ctx must be positive" in result.stderr
    assert _rows(home, "chat_sessions") == 0


def test_context_full_is_an_error_line(home: Path, smollm: Path) -> None:
    result = run_cli(
        "chat", str(smollm), "--prompt", "Tell me about Berlin. " * 30, "--n-ctx", "64", *ONE_THREAD, home=home
    )
    assert result.returncode == 1
    assert "the context holds 64" in result.stderr and "Traceback" not in result.stderr
    assert _rows(home, "chat_messages") == 0


def test_session_filed_under_a_project(home: Path, smollm: Path) -> None:
    result = run_cli("chat", str(smollm), "--prompt", PROMPT, "--project", "nope", home=home)
    assert result.returncode == 1
    assert result.stderr.strip() == "error: no project named 'nope' (see `tunedeck project list`)"
    assert run_cli("project", "create", "p", home=home).returncode == 0
    result = run_cli("chat", str(smollm), "--prompt", PROMPT, "--temperature", "0", "--max-tokens", "20",
                     "--project", "p", "--json", *ONE_THREAD, home=home)  # fmt: skip
    assert result.returncode == 0, result.stderr
    conn = sqlite3.connect(home / "tunedeck.db")
    project_id = conn.execute("SELECT project_id FROM chat_sessions").fetchone()[0]
    conn.close()
    assert project_id == 1
