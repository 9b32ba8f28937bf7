"""`tunedeck model add`: a folder, a GGUF or a hub id becomes a model artifact usable as --model NAME; a hub id
that cannot be reached is refused before queueing, within seconds, with one line."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import copy_home, run_cli

HUB_ID = "nobody-here/no-such-model"


def _ok(*args: str, home: Path, env: dict[str, str] | None = None, timeout: float = 300) -> dict:
    proc = run_cli(*args, "--json", home=home, env=env, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _jobs(home: Path) -> int:
    return len(json.loads(run_cli("job", "list", "--json", home=home).stdout))


def test_model_add_folder_is_usable_by_name(home: Path, tmp_path: Path, demo_model_dir: Path) -> None:
    from engine.train.queue import resolve_model
    from store.db import open_store

    assert run_cli("project", "create", "p", home=home).returncode == 0
    folder = tmp_path / "my-base"
    shutil.copytree(demo_model_dir, folder)
    job = _ok("model", "add", "p", str(folder), "--name", "base", "--wait", home=home)
    assert job["status"] == "completed", job
    shown = _ok("artifact", "show", str(job["result"]["artifact_id"]), home=home)
    assert shown["kind"] == "model" and shown["name"] == "base" and shown["path"] == str(folder.resolve())
    assert shown["meta"]["source_type"] == "folder" and shown["meta"]["source"] == str(folder.resolve())
    assert shown["meta"]["source_sha"] == shown["sha256"]
    listed = run_cli("model", "list", "p", home=home).stdout
    assert "base" in listed and "folder" in listed
    store = open_store(home)
    assert resolve_model(store, "base") == (str(folder.resolve()), shown["id"])  # run new --model base
    store.close()
    modules = _ok("model", "modules", "base", home=home)
    assert "q_proj" in modules
    est = _ok("estimate", "--model", "base", home=home)
    assert est["config"] == str(folder.resolve() / "config.json")
    # the same name again, a non-model file, a broken folder, a --dtype a folder cannot take: refused, nothing queued
    before = _jobs(home)
    (tmp_path / "notes.txt").write_text("hello")
    broken = tmp_path / "broken"
    broken.mkdir()
    for args, message in [
        (("p", str(folder), "--name", "base"), "already has an artifact named 'base'"),
        (("p", str(tmp_path / "notes.txt")), "not a GGUF file"),
        (("p", str(broken)), "no config.json"),
        (("p", str(folder), "--name", "b2", "--dtype", "bf16"), "only a GGUF is converted"),
        (("p", "./nowhere"), "no such folder or GGUF file"),
    ]:
        proc = run_cli("model", "add", *args, home=home)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1
    assert _jobs(home) == before


def test_model_add_gguf_dequantizes_with_a_note(home: Path, demo_gguf: Path) -> None:
    assert run_cli("project", "create", "p", home=home).returncode == 0
    job = _ok("model", "add", "p", str(demo_gguf), "--wait", home=home)
    assert job["status"] == "completed", job
    shown = _ok("artifact", "show", str(job["result"]["artifact_id"]), home=home)
    meta = shown["meta"]
    assert shown["name"] == "demo-llama-f16" and Path(shown["path"]).parent == home / "models"
    assert meta["source_type"] == "gguf" and meta["dequantized_from"] == "F16"
    assert "dequantized from a F16 GGUF" in meta["note"]
    from engine.artifacts import sha256_file

    assert meta["source_sha"] == sha256_file(demo_gguf)
    assert (Path(shown["path"]) / "config.json").is_file()
    assert "GGUF F16 (dequantized)" in run_cli("model", "list", "p", home=home).stdout
    text = run_cli("artifact", "show", "demo-llama-f16", home=home).stdout
    assert f"source    gguf {demo_gguf}" in text and "note      dequantized from a F16 GGUF" in text


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts connections and never answers (a firewall that drops, a hung proxy)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


def _offline_cases(silent_port: int) -> list[tuple[str, dict[str, str], str]]:
    return [
        ("HF_HUB_OFFLINE", {"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        ("closed port", {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"},
         "cannot reach the Hugging Face Hub"),
        ("no answer", {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{silent_port}"},
         "cannot reach the Hugging Face Hub"),
    ]


@pytest.mark.slow
def test_unreachable_hub_id_is_refused_in_seconds(home: Path, tmp_path: Path, silent_server: int,
                                                  demo_home_src: Path) -> None:
    copy_home(demo_home_src, home)
    before = _jobs(home)
    hf_home = tmp_path / "hf"
    for label, env, message in _offline_cases(silent_server):
        env = {**env, "HF_HOME": str(hf_home)}
        for args in (("model", "add", "demo", HUB_ID), ("estimate", "--model", HUB_ID),
                     ("run", "new", "demo", "--preset", "smoke", "--model", HUB_ID)):
            start = time.monotonic()
            proc = run_cli(*args, home=home, env=env, timeout=60)
            took = time.monotonic() - start
            lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("warning: ")]
            assert proc.returncode == 1 and len(lines) == 1 and message in lines[0], (label, args, proc.stderr)
            assert lines[0].startswith(f"error: {HUB_ID}") or f"model {HUB_ID!r}" in lines[0]
            assert took < 15, (label, args, took)  # python start-up (~2-4 s here) + at most one 5 s timeout
    assert _jobs(home) == before
    assert not (hf_home / "hub").exists() or not any((hf_home / "hub").iterdir())


class _GatedHub(BaseHTTPRequestHandler):
    """The Hub's answers for a gated repo, as huggingface.co sends them: the model's info is public, its files
    need an accepted licence (401 with X-Error-Code GatedRepo)."""

    def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path.startswith("/api/models/"):
            info = {"id": HUB_ID, "sha": "0" * 40, "gated": "manual", "private": False,
                    "siblings": [{"rfilename": "config.json", "size": 10},
                                 {"rfilename": "model.safetensors", "size": 1000}]}
            self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})
        else:
            self.do_HEAD()

    def do_HEAD(self) -> None:
        self._send(401, b"", {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to model is restricted."})

    def log_message(self, *args: object) -> None:
        pass


def test_gated_model_says_to_log_in(home: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GatedHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert run_cli("project", "create", "p", home=home).returncode == 0
        env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
               "HF_TOKEN": "", "HF_HOME": str(home.parent / "hf")}
        proc = run_cli("model", "add", "p", HUB_ID, home=home, env=env, timeout=60)
    finally:
        server.shutdown()
    assert proc.returncode == 1, proc.stderr
    assert "is a gated model" in proc.stderr and "run `hf auth login`" in proc.stderr
    assert _jobs(home) == 0


class _LocalHub:
    """A Hub on 127.0.0.1 serving one model repo (a folder) through the Hub's own HTTP API: the model info, the
    file tree, file metadata (HEAD) and contents (GET), so huggingface_hub's real download code runs against it.
    `fail_once` names a file whose first GET is refused (a download cut short)."""

    def __init__(self, folder: Path, repo: str, sha: str = "c" * 40, fail_once: str | None = None) -> None:
        import hashlib

        files = {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}
        self.gets: list[str] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if path.startswith(f"/api/models/{repo}/tree/"):
                    tree = [{"type": "file", "oid": hashlib.sha1(b).hexdigest(), "size": len(b), "path": n}
                            for n, b in files.items()]
                    return self._send(200, json.dumps(tree).encode(), {"Content-Type": "application/json"})
                if path.startswith(f"/api/models/{repo}"):
                    info = {"id": repo, "sha": sha, "private": False, "gated": False,
                            "siblings": [{"rfilename": n, "size": len(b)} for n, b in files.items()]}
                    return self._send(200, json.dumps(info).encode(), {"Content-Type": "application/json"})
                name = path.removeprefix(f"/{repo}/resolve/{sha}/")
                if name not in files:
                    return self._send(404, b"", {"X-Error-Code": "EntryNotFound"})
                if self.command == "GET":
                    hub.gets.append(name)
                    if name == fail_once and hub.gets.count(name) == 1:
                        return self._send(403, b"", {"X-Error-Message": "Connection cut (test)"})
                body = files[name]
                return self._send(200, body, {"X-Repo-Commit": sha, "ETag": f'"{hashlib.sha256(body).hexdigest()}"'})

            do_HEAD = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"


def test_hub_download_into_the_cache_keeps_fetched_files(home: Path, tmp_path: Path, demo_model_dir: Path) -> None:
    """A hub model downloads into HF_HOME's cache with the job's progress; a download cut short fails with one
    line, and adding it again fetches only the file that was missing."""
    hub = _LocalHub(demo_model_dir, "tiny/llama", fail_once="model.safetensors")
    env = {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": hub.endpoint, "HF_HOME": str(tmp_path / "hf"), "HF_TOKEN": ""}
    try:
        assert run_cli("project", "create", "p", home=home).returncode == 0
        proc = run_cli("model", "add", "p", "tiny/llama", "--wait", "--json", home=home, env=env, timeout=120)
        first = json.loads(proc.stdout)
        assert proc.returncode == 1 and first["status"] == "failed" and "download stopped" in first["error"], first
        assert "add it again to fetch the rest" in first["error"]
        fetched = sorted(set(hub.gets))
        first_gets = len(hub.gets)
        second = _ok("model", "add", "p", "tiny/llama", "--wait", home=home, env=env)
    finally:
        hub.server.shutdown()
    assert second["status"] == "completed", second
    assert hub.gets.count("model.safetensors") == 2  # cut once, then fetched whole
    assert all(hub.gets.count(n) == 1 for n in fetched if n != "model.safetensors")  # kept from the first try
    assert second["progress"] == 1.0
    shown = _ok("artifact", "show", str(second["result"]["artifact_id"]), home=home)
    snapshot = tmp_path / "hf" / "hub" / "models--tiny--llama" / "snapshots" / ("c" * 40)
    assert shown["path"] == str(snapshot) and (snapshot / "model.safetensors").read_bytes() == \
        (demo_model_dir / "model.safetensors").read_bytes()
    assert shown["meta"]["source"] == "tiny/llama" and shown["meta"]["source_sha"] == "c" * 40
    # the byte counts the progress bar is drawn from: this time only what the first try lacked (the weights, and
    # any file its cut cancelled before it started: huggingface_hub cancels the queued downloads on a failure)
    again = hub.gets[first_gets:]
    assert "model.safetensors" in again and not set(again) & (set(fetched) - {"model.safetensors"})
    size = sum((demo_model_dir / name).stat().st_size for name in again)
    assert f"tiny/llama: fetched {size:,} bytes" in Path(second["log_path"]).read_text()


def test_hub_id_already_cached_is_registered_offline(home: Path, tmp_path: Path, demo_model_dir: Path) -> None:
    """A model in the Hugging Face cache needs no network: registered from there, HF_HUB_OFFLINE set."""
    hf_home = tmp_path / "hf"
    snapshot = hf_home / "hub" / "models--tiny--cached-llama" / "snapshots" / ("a" * 40)
    shutil.copytree(demo_model_dir, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("a" * 40)
    assert run_cli("project", "create", "p", home=home).returncode == 0
    env = {"HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    job = _ok("model", "add", "p", "tiny/cached-llama", "--wait", home=home, env=env)
    assert job["status"] == "completed", job
    shown = _ok("artifact", "show", str(job["result"]["artifact_id"]), home=home)
    assert shown["name"] == "cached-llama" and shown["path"] == str(snapshot)
    assert shown["meta"] | {"source": "tiny/cached-llama", "source_type": "hub", "source_sha": "a" * 40} == \
        shown["meta"]
    assert os.path.commonpath([shown["path"], str(hf_home)]) == str(hf_home)


def test_tui_models_tab_adds_a_model(home: Path, tmp_path: Path, demo_model_dir: Path) -> None:
    """The Models tab (5) at 80x24: m opens the add form; an unreachable hub id is refused in the form, a folder
    is queued, runs for real and shows up as a model, with its source."""
    from textual.pilot import Pilot
    from textual.widgets import Input
    from tui_pilot import drive, notes, screen_text, text, wait_for

    from store.db import open_store
    from store.projects import create_project
    from tui.app import TunedeckApp
    from tui.screens.project import ProjectScreen
    from tui.widgets.live_table import LiveTable
    from tui.widgets.submit_form import ActionDialog

    folder = tmp_path / "tui-base"
    shutil.copytree(demo_model_dir, folder)
    store = open_store(home)
    with store.write() as session:
        create_project(session, "p")
    seen: dict[str, str] = {}

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        app.push_screen(ProjectScreen("p"))
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "project screen")
        await pilot.press("5")
        await wait_for(pilot, lambda: "Press m to add one" in screen_text(app), "the empty Models tab")
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, ActionDialog), "the add-model form")
        app.screen.query_one("#field-source", Input).value = HUB_ID
        await pilot.press("enter")
        await wait_for(pilot, lambda: "HF_HUB_OFFLINE is set" in text(app, "#error"), "the offline refusal", 20)
        app.screen.query_one("#field-source", Input).value = str(folder)
        app.screen.query_one("#field-name", Input).value = "tui-base"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "the form closing", 20)
        # read the toast while it shows (3 s): under load the model can take longer than that to appear
        await wait_for(pilot, lambda: "Model add queued as job" in notes(app), "the queued note", 20)
        seen["notes"] = notes(app)
        table = app.screen.query_one("#models-table", LiveTable)
        await wait_for(pilot, lambda: table.row_count == 1 and table.get_row_at(0)[1] == "model",
                       "the added model", 90)
        seen["screen"] = screen_text(app)

    drive(store, scenario)
    store.close()
    assert "Model add queued as job" in seen["notes"]
    assert "tui-base" in seen["screen"] and "folder" in seen["screen"] and "5 Models" in seen["screen"]
