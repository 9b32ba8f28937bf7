"""No file is written outside TUNEDECK_HOME except where the user named the path.

A whole CLI flow (demo, dataset import with a tokenizer, a training run to completion, listings, an export to a
path the user names, model inspection, an estimate, a chat with a GGUF) runs with HOME, TMPDIR, every XDG_* dir
and the working folder pointed at fresh folders; afterwards every file and folder in them is listed. Allowed:
- the user-named export;
- tunedeck's own cache in $XDG_CACHE_HOME/tunedeck: the demo model's deterministic build, kept there so that a
  second home (and every test) copies it instead of spending ~12 s rebuilding it. The XDG spec's place for
  regenerable data, safe to delete, holding nothing of the user's.
Libraries' caches that used to appear (torch's inductor folder in $TMPDIR) are pointed into the home by the
engine's environment (engine/launch.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from chat_models import smollm_path
from conftest import ROOT, processes_with, warm_engines

pytestmark = pytest.mark.slow

WATCHED = {"HOME": "user-home", "TMPDIR": "tmp", "XDG_DATA_HOME": "xdg-data", "XDG_CACHE_HOME": "xdg-cache",
           "XDG_CONFIG_HOME": "xdg-config", "XDG_STATE_HOME": "xdg-state", "XDG_RUNTIME_DIR": "xdg-runtime"}
# Variables that would send a library's writes somewhere this test does not watch.
UNSET = ("HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "HF_XET_CACHE", "TRANSFORMERS_CACHE", "TORCH_HOME",
         "TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR", "PYTHONPYCACHEPREFIX", "MPLCONFIGDIR", "TUNEDECK_LLAMA_SDIST",
         "TUNEDECK_WARM_DIR")  # the home's own warm engine: the training run starts from it


def _listing(folders: list[Path]) -> set[Path]:
    return {p for folder in folders for p in folder.rglob("*")}


def test_nothing_is_written_outside_the_home_but_named_paths(tmp_path: Path) -> None:
    folders = {var: tmp_path / name for var, name in WATCHED.items()}
    cwd = tmp_path / "cwd"
    for folder in [*folders.values(), cwd]:
        folder.mkdir()
    home = tmp_path / "tunedeck-home"
    env = {k: v for k, v in os.environ.items() if k not in UNSET and k != "TUNEDECK_HOME"}
    env.update({var: str(path) for var, path in folders.items()}, TUNEDECK_HOME=str(home), HF_HUB_OFFLINE="1",
               PYTHONPATH=str(ROOT))
    data = cwd / "chats.jsonl"  # the user's own file, in the folder they work in
    data.write_text("".join(json.dumps({"instruction": f"Reverse: a{i} b{i}", "output": f"b{i} a{i}"}) + "\n"
                            for i in range(40)))

    def tunedeck(*args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "cli", *args], cwd=cwd, env=env, capture_output=True,
                                text=True, timeout=600, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, (args, result.stderr)
        return result.stdout

    watched = [*folders.values(), cwd]
    before = _listing(watched)
    tunedeck("demo")
    model = home / "models" / "demo-llama"
    tunedeck("dataset", "add", "demo", "chats.jsonl", "--tokenizer", str(model), "--max-length", "64")
    run = json.loads(tunedeck("run", "new", "demo", "--dataset", "chats", "--preset", "smoke", "--set", "max_steps=2",
                              "--set", "save_steps=1", "--set", "eval_steps=1", "--wait", "--json"))
    assert run["status"] == "completed"
    for args in (("artifact", "list", "demo"), ("run", "show", str(run["id"])), ("job", "list"),
                 ("project", "show", "demo"), ("dataset", "show", "chats"), ("model", "modules", str(model)),
                 ("estimate", "--model", str(model), "--gpu-memory", "8")):
        tunedeck(*args)
    tunedeck("run", "export", str(run["id"]), "-o", "my-run.yaml")  # relative: the user's working folder
    gguf = smollm_path()
    if gguf is not None:
        tunedeck("chat", str(gguf), "--prompt", "Hi", "--max-tokens", "4", "--threads", "1", "--project", "demo")
    deadline = time.monotonic() + 60
    while processes_with("engine", str(home)) and time.monotonic() < deadline:  # runners exit once their queue is empty
        time.sleep(0.2)
    assert "ready in" in (home / "logs" / "warm-engine.log").read_text()  # the home's warm engine, started by the
    for pid in warm_engines("HOME", str(folders["HOME"])):  # import job, ran the training; it would idle 5 min
        os.kill(pid, signal.SIGTERM)

    cache = folders["XDG_CACHE_HOME"] / "tunedeck"
    new = _listing(watched) - before
    allowed = {cwd / "my-run.yaml", cache}
    unexpected = sorted(str(p) for p in new if p not in allowed and cache not in p.parents)
    assert unexpected == [], "written outside the home:\n" + "\n".join(unexpected)
    assert [p.name for p in cache.iterdir()] and all(p.name.startswith("demo-llama-") for p in cache.iterdir())
    assert (cwd / "my-run.yaml").is_file() and (home / "tunedeck.db").is_file()
