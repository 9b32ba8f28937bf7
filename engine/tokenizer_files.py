"""Keeping a saved tokenizer readable by llama.cpp's converter.

transformers 5 keeps added tokens (chat markers such as <|im_start|>) only in tokenizer.json; its
`save_pretrained` no longer writes `added_tokens_decoder` into tokenizer_config.json. llama.cpp's
converter reads that key to type those tokens CONTROL for sentencepiece models: without it they become
NORMAL tokens, and llama.cpp splits "<|im_start|>" into pieces, so the GGUF no longer reads its own
chat template the way the model was trained.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

TOKEN_FLAGS = ("content", "lstrip", "normalized", "rstrip", "single_word", "special")


def added_tokens(folder: Path) -> dict[str, dict[str, Any]]:
    """tokenizer.json's added tokens as `added_tokens_decoder` entries ({} when there is no tokenizer.json)."""
    try:
        data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(t["id"]): {k: t[k] for k in TOKEN_FLAGS if k in t} for t in data.get("added_tokens", [])}


def missing_added_tokens(folder: Path) -> dict[str, dict[str, Any]]:
    """The `added_tokens_decoder` tokenizer_config.json should have but lacks ({} when complete)."""
    wanted = added_tokens(folder)
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    have = config.get("added_tokens_decoder") or {}
    return wanted if any(k not in have for k in wanted) else {}


def patched_config(folder: Path) -> dict[str, Any] | None:
    """tokenizer_config.json with `added_tokens_decoder` filled in, or None when nothing is missing."""
    missing = missing_added_tokens(folder)
    if not missing:
        return None
    config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    config["added_tokens_decoder"] = {**missing, **(config.get("added_tokens_decoder") or {})}
    return config


def write_added_tokens_decoder(folder: Path) -> bool:
    """Fill in `added_tokens_decoder` in a saved tokenizer's config (atomically); True if it changed."""
    config = patched_config(folder)
    if config is None:
        return False
    target = folder / "tokenizer_config.json"
    fd, tmp = tempfile.mkstemp(prefix=".tokenizer_config-", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, target)
    return True
