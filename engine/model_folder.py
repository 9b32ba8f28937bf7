"""Is this local folder a model tunedeck can load? Checked before a job is queued and again when it starts.

Light on purpose (standard library only): config.json is read, safetensors headers are read (never the
weights), so a broken folder is refused in milliseconds with a message naming the path and what is wrong,
instead of a library's traceback from inside a job, or a job stuck building a model of absurd size.
"""

from __future__ import annotations

import importlib.util
import json
import re
import struct
from functools import cache
from pathlib import Path
from typing import Any

from store.errors import NotFound, Refused

# Largest plausible value of each size field (several times the biggest published models): a config past
# these is damaged or hostile, and building it would exhaust memory or take hours.
SIZE_LIMITS = {
    "hidden_size": 1 << 17, "n_embd": 1 << 17, "d_model": 1 << 17, "intermediate_size": 1 << 20,
    "n_inner": 1 << 20, "num_hidden_layers": 1024, "n_layer": 1024, "num_attention_heads": 4096,
    "n_head": 4096, "num_key_value_heads": 4096, "head_dim": 1 << 14, "vocab_size": 1 << 23,
}
MAX_PARAMETERS = 10**13  # a rough count over the config, past which it cannot be a real model
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model",
                   "sentencepiece.bpe.model")
ADAPTER_WEIGHTS = "adapter_model.safetensors"
MAX_HEADER_BYTES = 100 * 1024 * 1024
_CONFIG_PAIR = re.compile(r"""["']([\w.-]+)["']\s*[,:]\s*["']\w+Config["']""")


def read_json_object(file: Path, what: str) -> dict[str, Any]:
    """The JSON object in `file` (`what` names it in errors): NotFound when the file is missing, Refused when
    it is not valid JSON or not an object."""
    if not file.is_file():
        raise NotFound(f"{file.parent}: no {file.name} ({what})")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise Refused(f"{file}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise Refused(f"{file}: expected a JSON object ({what}), got {type(data).__name__}")
    return data


def read_model_config(path: Path) -> dict[str, Any]:
    """`path`'s config.json as a dict, refused when it is missing, not JSON or not an object."""
    if not path.exists():
        raise NotFound(f"{path}: no such model folder")
    if not path.is_dir():
        raise Refused(f"{path}: not a folder (a model is a folder with config.json, weights and tokenizer files)")
    if not (path / "config.json").is_file():
        raise NotFound(f"{path}: not a model folder (no config.json)")
    return read_json_object(path / "config.json", "a model config")


def check_config(config: dict[str, Any], where: str, trust_remote_code: bool = False, known_type: bool = True) -> None:
    """Refuse a config without a model_type, of a type transformers does not know (when `known_type`, unless the
    model ships its own code and the run trusts it), or with sizes no real model has. `where` names it."""
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type.strip():
        raise Refused(f"{where}: no model_type (not a transformers model config)")
    known = known_model_types() if known_type else frozenset()
    if known and model_type not in known and not (trust_remote_code and config.get("auto_map")):
        raise Refused(f"{where}: model_type {model_type!r} is not one the installed transformers knows"
                      + (" (it ships its own code: set trust_remote_code: true if you trust it)"
                         if config.get("auto_map") else ""))
    inner = config.get("text_config")
    for section in (config, inner) if isinstance(inner, dict) else (config,):
        for key, limit in SIZE_LIMITS.items():
            value = section.get(key)
            values = value if isinstance(value, list) else [value]  # a few families size each layer
            if value is not None and (not values or any(
                    isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= limit for v in values)):
                raise Refused(f"{where}: {key} is {value!r}; expected a whole number from 1 to {limit}")
        hidden = _size(section, "hidden_size", "n_embd", "d_model")
        inter = _size(section, "intermediate_size", "n_inner") or 4 * hidden
        rough = _size(section, "num_hidden_layers", "n_layer") * (4 * hidden * hidden + 3 * hidden * inter) \
            + 2 * hidden * _size(section, "vocab_size")
        if rough > MAX_PARAMETERS:
            raise Refused(f"{where}: its sizes describe about {rough:.1e} parameters; no real model is that big")


def _size(section: dict[str, Any], *keys: str) -> int:
    """The first of `keys` the section has (the largest entry of a per-layer list), else 0."""
    for key in keys:
        value = section.get(key)
        if value:
            return max(value) if isinstance(value, list) else int(value)
    return 0


@cache
def known_model_types() -> frozenset[str]:
    """The model types of the installed transformers: the `("llama", "LlamaConfig")` pairs of its auto-config
    tables, read from its source (importing it costs seconds). Empty when they cannot be found, and then no
    type is refused."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or not spec.submodule_search_locations:
        return frozenset()
    auto = Path(next(iter(spec.submodule_search_locations)), "models", "auto")
    found: set[str] = set()
    for name in ("configuration_auto.py", "auto_mappings.py"):
        try:
            found.update(_CONFIG_PAIR.findall((auto / name).read_text(encoding="utf-8")))
        except OSError:
            pass
    return frozenset(found) if {"llama", "gpt2"} <= found else frozenset()


def read_safetensors_header(file: Path) -> tuple[int, dict[str, dict[str, Any]]]:
    """A safetensors file's header: its length in bytes and its tensor entries (name -> dtype, shape,
    data_offsets); refused when the file is too short, cut inside its header, or its header is not JSON."""
    size = file.stat().st_size
    try:
        with file.open("rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise Refused(f"{file}: not a safetensors file (only {size} bytes)")
            (length,) = struct.unpack("<Q", raw)
            if length > min(size - 8, MAX_HEADER_BYTES):
                raise Refused(f"{file}: truncated or not a safetensors file (its header alone claims "
                              f"{length:,} bytes; the file has {size:,})")
            header = json.loads(fh.read(length).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise Refused(f"{file}: damaged (its safetensors header cannot be read)") from None
    if not isinstance(header, dict):
        raise Refused(f"{file}: damaged (its safetensors header is not an object)")
    return length, {k: v for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)}


def check_safetensors(file: Path) -> None:
    """Refuse a safetensors file whose header is unreadable or that is shorter than its header says."""
    length, entries = read_safetensors_header(file)
    try:
        end = max((int(v["data_offsets"][1]) for v in entries.values()), default=0)
    except (ValueError, TypeError, KeyError, IndexError):
        raise Refused(f"{file}: damaged (its safetensors header cannot be read)") from None
    size = file.stat().st_size
    if 8 + length + end > size:
        raise Refused(f"{file}: truncated (its tensors need {8 + length + end:,} bytes; the file has {size:,})")


def weight_files(path: Path) -> list[Path]:
    """The weight files a model folder loads from; refused when there are none or its index names a
    missing shard."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = path / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
                files = [path / name for name in sorted(set(weight_map.values()))]
            except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError):
                raise Refused(f"{index}: damaged (not a weights index)") from None
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise NotFound(f"{path}: weights file {missing[0]} named by {index_name} is missing")
            return files
    files = sorted(p for p in path.glob("*.safetensors") if p.name != ADAPTER_WEIGHTS)
    files = files or [p for p in (path / "pytorch_model.bin",) if p.is_file()]
    if not files:
        raise NotFound(f"{path}: no weights (no *.safetensors or pytorch_model.bin)")
    return files


def check_tokenizer_files(path: Path) -> None:
    """Refuse a folder with none of the files a tokenizer loads from."""
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise NotFound(f"{path}: no tokenizer files (none of {', '.join(TOKENIZER_FILES)})")


def check_model_folder(path: Path, *, weights: bool = True, tokenizer: bool = True,
                       trust_remote_code: bool = False) -> dict[str, Any]:
    """Check a local model folder (its config; its weights' headers and tokenizer files unless told not to);
    returns its config."""
    config = read_model_config(path)
    check_config(config, str(path / "config.json"), trust_remote_code)
    if weights:
        for file in weight_files(path):
            if file.suffix == ".safetensors":
                check_safetensors(file)
            elif file.stat().st_size == 0:
                raise Refused(f"{file}: empty")
    if tokenizer:
        check_tokenizer_files(path)
    return config
