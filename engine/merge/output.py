"""Writing a merged model folder: a temp folder under the job's folder, renamed into place when complete."""

from __future__ import annotations

import json
import resource
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from engine.merge.compat import ADAPTER_CONFIG, ADAPTER_WEIGHTS, WEIGHT_INDEX

TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "tokenizer.model",
    "spiece.model", "vocab.json", "merges.txt", "vocab.txt", "chat_template.jinja", "chat_template.json",
)  # fmt: skip
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf")
SKIP_FILES = {WEIGHT_INDEX, "pytorch_model.bin.index.json", ADAPTER_CONFIG, ADAPTER_WEIGHTS}


def fresh_tmp(job_dir: Path) -> Path:
    """An empty `.output-tmp` folder in the job's folder (a leftover from an earlier try is removed)."""
    tmp = job_dir / ".output-tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


@contextmanager
def remove_on_error(tmp: Path) -> Iterator[Path]:
    """Remove the temp folder when the block fails or is cancelled (no half-written model is left behind)."""
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish(tmp: Path, job_dir: Path) -> Path:
    """Rename the complete temp folder to `job_dir/output` (replacing an earlier try's) and return it."""
    out = job_dir / "output"
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def copy_tokenizer(sources: list[Path], dest: Path) -> list[str]:
    """Copy tokenizer files verbatim: all of the first source that has a tokenizer, then any the later
    sources add (e.g. the base's tokenizer.model, which transformers 5 no longer writes). Returns the names."""
    copied: list[str] = []
    primary = next((s for s in sources if (s / "tokenizer_config.json").is_file() or (s / "tokenizer.json").is_file()),
                   None)
    ordered = ([primary] if primary else []) + [s for s in sources if s != primary]
    for source in ordered:
        for name in TOKENIZER_FILES:
            if (source / name).is_file() and not (dest / name).exists():
                shutil.copy2(source / name, dest / name)
                copied.append(name)
    from engine.tokenizer_files import write_added_tokens_decoder

    write_added_tokens_decoder(dest)  # an adapter saved by transformers 5 lacks it; llama.cpp needs it
    return copied


def copy_model_files(base: Path, dest: Path) -> list[str]:
    """Copy a model folder's files other than weights (config, generation config, tokenizer...)."""
    copied: list[str] = []
    for file in sorted(base.iterdir()):
        if (not file.is_file() or file.name in SKIP_FILES or file.name.endswith(WEIGHT_SUFFIXES)
                or file.name.startswith(("tunedeck_", ".")) or (dest / file.name).exists()):
            continue
        shutil.copy2(file, dest / file.name)
        copied.append(file.name)
    return copied


def write_provenance(dest: Path, info: dict[str, Any]) -> None:
    """`tunedeck_merge.json`: how this folder was made."""
    (dest / "tunedeck_merge.json").write_text(json.dumps(info, indent=2, default=str) + "\n", encoding="utf-8")


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
