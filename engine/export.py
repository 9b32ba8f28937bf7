"""Serving an artifact elsewhere: the commands for vLLM and llama-server, and an Ollama Modelfile."""

from __future__ import annotations

import json
import os
import re
import shlex
import tempfile
from pathlib import Path
from typing import Any

from store.db import Store
from store.errors import NotFound, Refused

# Ollama templates are Go templates, not Jinja: the families llama.cpp also recognizes, by their markers. Ollama
# passes every message in .Messages (system ones too) and the system text in .System; a Modelfile's SYSTEM is
# used when the conversation has none, which is how a model's default system prompt is kept.
OLLAMA_TEMPLATES = {
    "chatml": ("<|im_start|>", (
        "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
        "{{ range .Messages }}{{ if ne .Role \"system\" }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n"
        "{{ end }}{{ end }}<|im_start|>assistant\n"), ["<|im_end|>", "<|im_start|>"]),
    "llama3": ("<|start_header_id|>", (
        "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
        "{{ range .Messages }}{{ if ne .Role \"system\" }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n"
        "{{ .Content }}<|eot_id|>{{ end }}{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"),
        ["<|eot_id|>", "<|start_header_id|>"]),
}
# What each Go template above renders (the same text, in Python), to prove a translation before writing it.
_TURN = {"chatml": ("<|im_start|>{role}\n{content}<|im_end|>\n", "<|im_start|>assistant\n"),
         "llama3": ("<|start_header_id|>{role}<|end_header_id|>\n\n{content}<|eot_id|>",
                    "<|start_header_id|>assistant<|end_header_id|>\n\n")}
_DEFAULT_SYSTEM = {"chatml": re.compile(r"^<\|im_start\|>system\n(.*?)<\|im_end\|>\n", re.S),
                   "llama3": re.compile(r"^<\|start_header_id\|>system<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>", re.S)}
PROBE_CHATS = (
    [{"role": "user", "content": "Name the capital of Germany."}],
    [{"role": "system", "content": "Answer in one word."}, {"role": "user", "content": "Name the capital of Germany."},
     {"role": "assistant", "content": "Berlin."}, {"role": "user", "content": "And of France?"}],
)
DEFAULT_CONTEXT = 4096


def _go_render(family: str, messages: list[dict[str, str]], default_system: str | None) -> str:
    system = next((m["content"] for m in messages if m["role"] == "system"), default_system)
    turn, prompt = _TURN[family]
    head = turn.format(role="system", content=system) if system else ""
    return head + "".join(turn.format(**m) for m in messages if m["role"] != "system") + prompt


def ollama_translation(template: str, bos: str = "", eos: str = "") -> dict[str, Any] | None:
    """The model's chat template as an Ollama TEMPLATE (+ SYSTEM when the model inserts a default system prompt
    into conversations without one), proven to render the probe chats with and without a system message exactly
    as the Jinja template does; None when no known family does."""
    family = next((k for k, (marker, _, _) in OLLAMA_TEMPLATES.items() if marker in template), None)
    if family is None:
        return None
    from engine.gguf.template import render_prompt

    try:  # Ollama writes BOS itself: a template that renders bos_token has it taken off here
        rendered = [render_prompt(template, chat, bos, eos) for chat in PROBE_CHATS]
        if bos and "bos_token" in template:
            rendered = [text.removeprefix(bos) for text in rendered]
    except Exception:  # a template llama-cpp-python's Jinja cannot run: leave it to Ollama
        return None
    found = _DEFAULT_SYSTEM[family].match(rendered[0])
    default = found.group(1) if found else None
    if any(_go_render(family, chat, default) != text for chat, text in zip(PROBE_CHATS, rendered, strict=True)):
        return None
    _, go_template, stops = OLLAMA_TEMPLATES[family]
    return {"family": family, "template": go_template, "stops": stops, "system": default}


def _q(value: str | Path) -> str:
    return shlex.quote(str(value))


def context_length(gguf_path: Path) -> int | None:
    """The context length the model was trained for (the GGUF's `{arch}.context_length`)."""
    from engine.gguf.reader import read_metadata

    value = read_metadata(gguf_path).context_length
    return value if value and value > 0 else None


def serve_commands(artifact: Any, base_gguf: str | None = None) -> list[str]:
    """Shell commands that serve `artifact` (paths quoted). llama-server gets `--jinja`, so it renders chats with
    the model's own template from the GGUF, and the model's own context length."""
    path = Path(artifact.path)
    name = artifact.name.removesuffix(".gguf")
    if artifact.kind in {"model", "merged"}:
        return [f"vllm serve {_q(path)} --served-model-name {_q(name)}"]
    if artifact.kind == "adapter":
        cfg = json.loads((path / "adapter_config.json").read_text()) if (path / "adapter_config.json").is_file() \
            else {}
        base = artifact.meta.get("base_model") or cfg.get("base_model_name_or_path") or "BASE_MODEL"
        rank = int(cfg.get("r") or 16)
        return [f"vllm serve {_q(base)} --enable-lora --lora-modules {_q(f'{name}={path}')} "
                f"--max-lora-rank {max(16, rank)}"]
    if artifact.kind == "gguf":
        ctx = context_length(path) or DEFAULT_CONTEXT
        return [f"llama-server -m {_q(path)} -c {ctx} --jinja",
                f"ollama create {_q(name)} -f {_q(path.with_name(path.stem + '.Modelfile'))}"]
    if artifact.kind == "gguf-lora":
        ctx = (context_length(Path(base_gguf)) if base_gguf and Path(base_gguf).is_file() else None) \
            or DEFAULT_CONTEXT
        return [f"llama-server -m {_q(base_gguf or 'BASE.gguf')} --lora {_q(path)} -c {ctx} --jinja"]
    if artifact.kind == "compressed":  # GPTQ/AWQ in compressed-tensors (engine.compress)
        from engine.compress.serve import compressed_serve_commands

        return compressed_serve_commands(artifact)
    raise Refused(f"artifact {artifact.id} is a {artifact.kind}: nothing to serve")


def modelfile_text(gguf_path: Path) -> str:
    """An Ollama Modelfile for a GGUF: its own chat template as a Go template (with its default system prompt),
    its stop tokens and its context length."""
    from engine.gguf.reader import read_metadata

    meta = read_metadata(gguf_path)
    template = meta.chat_template or ""
    lines = [f"FROM ./{gguf_path.name}"]
    translated = ollama_translation(template, meta.bos_token, meta.eos_token) if template else None
    if translated:
        lines.append(f'TEMPLATE """{translated["template"]}"""')
        if translated["system"]:
            lines.append(f'SYSTEM """{translated["system"]}"""')
        lines += [f'PARAMETER stop "{s}"' for s in translated["stops"]]
    elif template:
        lines.append("# The GGUF's chat template is not one tunedeck can translate to Ollama's Go templates exactly;")
        lines.append("# Ollama reads tokenizer.chat_template from the GGUF metadata instead.")
    else:
        lines.append("# No chat template in this GGUF: chats will use Ollama's raw prompt format.")
    if ctx := meta.context_length:
        lines.append(f"PARAMETER num_ctx {ctx}")
    return "\n".join(lines) + "\n"


def write_modelfile(gguf_path: Path) -> Path:
    """Write `<stem>.Modelfile` next to the GGUF (temp name, then rename)."""
    if not gguf_path.is_file():
        raise NotFound(f"{gguf_path}: the GGUF file is gone")
    out = gguf_path.with_name(gguf_path.stem + ".Modelfile")
    fd, tmp = tempfile.mkstemp(prefix=".modelfile-", dir=out.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(modelfile_text(gguf_path))
    os.replace(tmp, out)
    return out


def serve_info(store: Store, ref: str) -> dict[str, Any]:
    """Serve commands for an artifact; a GGUF also gets its Ollama Modelfile written beside it."""
    from store.artifacts import children, get_artifact

    with store.read() as session:
        artifact = get_artifact(session, ref)
        base_gguf = None
        if artifact.kind == "gguf-lora" and artifact.parent_id is not None:
            base_gguf = next((c.path for c in children(session, artifact.parent_id) if c.kind == "gguf"), None)
    info: dict[str, Any] = {"artifact_id": artifact.id, "commands": serve_commands(artifact, base_gguf)}
    if artifact.kind == "gguf":
        info["modelfile"] = str(write_modelfile(Path(artifact.path)))
    return info
