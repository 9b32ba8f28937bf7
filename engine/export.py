"""Serving an artifact elsewhere: the commands for vLLM and llama-server, and an Ollama Modelfile."""

from __future__ import annotations

import json
import os
import shlex
import tempfile
from pathlib import Path
from typing import Any

from store.db import Store
from store.errors import NotFound, Refused

# Ollama templates are Go templates, not Jinja: the families llama.cpp also recognizes, by their markers.
OLLAMA_TEMPLATES = {
    "chatml": ("<|im_start|>", (
        "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
        "{{ range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n"), ["<|im_end|>", "<|im_start|>"]),
    "llama3": ("<|start_header_id|>", (
        "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
        "{{ range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>"
        "{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n"), ["<|eot_id|>", "<|start_header_id|>"]),
}


def _q(value: str | Path) -> str:
    return shlex.quote(str(value))


def serve_commands(artifact: Any, base_gguf: str | None = None) -> list[str]:
    """Shell commands that serve `artifact` (paths quoted)."""
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
        return [f"llama-server -m {_q(path)} -c 4096 --jinja",
                f"ollama create {_q(name)} -f {_q(path.with_name(path.stem + '.Modelfile'))}"]
    if artifact.kind == "gguf-lora":
        return [f"llama-server -m {_q(base_gguf or 'BASE.gguf')} --lora {_q(path)} -c 4096 --jinja"]
    raise Refused(f"artifact {artifact.id} is a {artifact.kind}: nothing to serve")


def modelfile_text(gguf_path: Path) -> str:
    """An Ollama Modelfile for a GGUF: its chat template as a Go template and its stop tokens."""
    from engine.gguf.fidelity import metadata

    meta = metadata(gguf_path)
    template = meta.get("chat_template") or ""
    lines = [f"FROM ./{gguf_path.name}"]
    family = next((k for k, (marker, _, _) in OLLAMA_TEMPLATES.items() if marker in template), None)
    if family:
        _, go_template, stops = OLLAMA_TEMPLATES[family]
        lines.append(f'TEMPLATE """{go_template}"""')
        lines += [f'PARAMETER stop "{s}"' for s in stops]
    elif template:
        lines.append("# The GGUF's chat template is not one tunedeck can translate to Ollama's Go templates;")
        lines.append("# Ollama reads tokenizer.chat_template from the GGUF metadata instead.")
    else:
        lines.append("# No chat template in this GGUF: chats will use Ollama's raw prompt format.")
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
