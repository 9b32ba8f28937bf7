"""Can these models (or adapters) be merged? Checked before any job is queued.

Light on purpose: reads config.json, tokenizer files, adapter_config.json and safetensors
headers (`engine.model_folder.read_safetensors_header`) with the standard library only, so a
refusal costs milliseconds and never loads a weight. Every refusal is a `store.errors.Refused`
whose message names the two models and what differs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.model_folder import read_json_object, read_safetensors_header
from store.errors import NotFound, Refused

WEIGHT_INDEX = "model.safetensors.index.json"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
TOKENIZER_HASHED_FILES = ("tokenizer.model", "vocab.json", "merges.txt", "vocab.txt", "spiece.model")


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives and what it looks like, from a safetensors header."""

    file: Path
    dtype: str
    shape: tuple[int, ...]


def read_config(folder: Path) -> dict[str, Any]:
    """A model folder's config.json."""
    return read_json_object(folder / "config.json", "a model config")


def read_adapter_config(folder: Path) -> dict[str, Any]:
    """An adapter folder's adapter_config.json."""
    return read_json_object(folder / ADAPTER_CONFIG, "an adapter config")


def safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """The tensor entries of a safetensors file's header (name -> dtype, shape, data_offsets)."""
    return read_safetensors_header(path)[1]


def weight_files(folder: Path) -> list[Path]:
    """The safetensors files holding a model's weights (per its index when sharded)."""
    index = folder / WEIGHT_INDEX
    if index.is_file():
        weight_map = read_json_object(index, "the weights index").get("weight_map") or {}
        return [folder / name for name in sorted(set(weight_map.values()))]
    return sorted(p for p in folder.glob("*.safetensors") if p.name != ADAPTER_WEIGHTS)


def tensor_index(folder: Path) -> dict[str, TensorInfo]:
    """Every tensor of a model folder: name -> file, dtype, shape (empty when it has no safetensors)."""
    out: dict[str, TensorInfo] = {}
    for file in weight_files(folder):
        if not file.is_file():
            raise NotFound(f"{folder}: weights file {file.name} named by its index is missing")
        for name, entry in safetensors_header(file).items():
            out[name] = TensorInfo(file, str(entry.get("dtype")), tuple(entry.get("shape") or ()))
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def tokenizer_fingerprints(folder: Path) -> dict[str, str]:
    """Hashes of what defines a tokenizer: tokenizer.json's model (vocab, merges) and added tokens, and the
    raw bytes of vocabulary files (tokenizer.model, vocab.json...). Formatting and options are ignored."""
    out: dict[str, str] = {}
    tok = folder / "tokenizer.json"
    if tok.is_file():
        data = read_json_object(tok, "the tokenizer")
        model = data.get("model") or {}
        merges = [" ".join(m) if isinstance(m, list) else m for m in model.get("merges") or []]
        added = sorted((int(t.get("id", -1)), str(t.get("content"))) for t in data.get("added_tokens") or [])
        key = {"type": model.get("type"), "vocab": model.get("vocab"), "merges": merges, "added": added}
        out["tokenizer.json"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    for name in TOKENIZER_HASHED_FILES:
        if (folder / name).is_file():
            out[name] = _sha256(folder / name)
    return out


def vocab_size(config: dict[str, Any]) -> int | None:
    """The config's vocabulary size (top level, or a multimodal model's text_config)."""
    size = config.get("vocab_size")
    if size is None and isinstance(config.get("text_config"), dict):
        size = config["text_config"].get("vocab_size")
    return size


def architecture(config: dict[str, Any]) -> str:
    """`LlamaForCausalLM (llama)` style label for messages."""
    archs = ",".join(config.get("architectures") or []) or "?"
    return f"{archs} ({config.get('model_type', '?')})"


def refuse_quantized(config: dict[str, Any], label: str) -> None:
    """Merging needs 16/32-bit weights; a checkpoint stored quantized cannot be merged into."""
    quant = config.get("quantization_config")
    if quant:
        how = quant.get("quant_method", "quantized") if isinstance(quant, dict) else "quantized"
        raise Refused(f"{label} is stored quantized ({how}); merging needs its un-quantized 16/32-bit weights")


def check_models(a: Path, b: Path, label_a: str, label_b: str) -> list[str]:
    """Refuse unless two full models can be merged tensor by tensor; returns warnings (things not checkable).

    Checks, in order: architecture, vocabulary size, tensor names and shapes, tokenizer.
    """
    ca, cb = read_config(a), read_config(b)
    what = f"cannot merge {label_a} and {label_b}"
    refuse_quantized(ca, label_a)
    refuse_quantized(cb, label_b)
    archs_a, archs_b = ca.get("architectures"), cb.get("architectures")
    if ca.get("model_type") != cb.get("model_type") or (archs_a and archs_b and archs_a != archs_b):
        raise Refused(f"{what}: different architectures ({architecture(ca)} vs {architecture(cb)})")
    if vocab_size(ca) != vocab_size(cb):
        raise Refused(f"{what}: different vocabulary sizes ({vocab_size(ca)} vs {vocab_size(cb)})")
    ia, ib = tensor_index(a), tensor_index(b)
    for label, index in ((label_a, ia), (label_b, ib)):
        if not index:
            raise Refused(f"{label} has no safetensors weights; merging full models needs *.safetensors files")
    only_a, only_b = sorted(set(ia) - set(ib)), sorted(set(ib) - set(ia))
    if only_a or only_b:
        parts = [f"{len(names)} only in {label} (e.g. {names[0]})"
                 for label, names in ((label_a, only_a), (label_b, only_b)) if names]
        raise Refused(f"{what}: different tensor names: {'; '.join(parts)}")
    diff = [name for name in ia if ia[name].shape != ib[name].shape]
    if diff:
        name = diff[0]
        more = f" (and {len(diff) - 1} more)" if len(diff) > 1 else ""
        raise Refused(f"{what}: different tensor shapes: {name} is {list(ia[name].shape)} in {label_a} but "
                      f"{list(ib[name].shape)} in {label_b}{more}")
    return check_tokenizers(a, b, label_a, label_b)


def check_tokenizers(a: Path, b: Path, label_a: str, label_b: str) -> list[str]:
    """Refuse when both folders carry the same kind of tokenizer file and they differ; warn when not comparable."""
    fa, fb = tokenizer_fingerprints(a), tokenizer_fingerprints(b)
    common = sorted(set(fa) & set(fb))
    differ = [name for name in common if fa[name] != fb[name]]
    if differ:
        raise Refused(f"cannot merge {label_a} and {label_b}: different tokenizers ({', '.join(differ)} differ)")
    if not common:
        return [f"tokenizers of {label_a} and {label_b} could not be compared (no tokenizer file in common); "
                f"the merged model uses {label_a}'s"]
    return []


def _lora_modules(adapter: Path) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """module name (as in the base checkpoint) -> (lora_A shape, lora_B shape)."""
    file = adapter / ADAPTER_WEIGHTS
    if not file.is_file():
        raise NotFound(f"{adapter}: no {ADAPTER_WEIGHTS} (adapter weights)")
    shapes: dict[str, dict[str, tuple[int, ...]]] = {}
    for key, entry in safetensors_header(file).items():
        for part in ("lora_A", "lora_B"):
            suffix = f".{part}.weight"
            if key.endswith(suffix):
                module = key[: -len(suffix)].removeprefix("base_model.model.")
                shapes.setdefault(module, {})[part] = tuple(entry.get("shape") or ())
    return {m: (s["lora_A"], s["lora_B"]) for m, s in shapes.items() if "lora_A" in s and "lora_B" in s}


def check_adapter_fits(adapter: Path, base: Path, label_adapter: str, label_base: str) -> None:
    """Refuse an adapter whose LoRA matrices do not fit the base's weights (another size or family of model)."""
    config = read_adapter_config(adapter)
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise Refused(f"{label_adapter} is a {config.get('peft_type')} adapter; tunedeck merges LoRA adapters")
    refuse_quantized(read_config(base), label_base)
    modules = _lora_modules(adapter)
    index = tensor_index(base)
    if not modules or not index:
        return  # nothing to compare (a .bin-only base): loading will tell
    found = {m: index[f"{m}.weight"] for m in modules if f"{m}.weight" in index}
    if not found:
        raise Refused(f"cannot merge {label_adapter} into {label_base}: none of the adapter's {len(modules)} target "
                      f"modules (e.g. {next(iter(modules))}) exist in the base")
    for module, info in found.items():
        a_shape, b_shape = modules[module]
        if len(info.shape) != 2 or len(a_shape) != 2 or len(b_shape) != 2:
            continue  # convolutions and other layouts: peft checks them when loading
        if (a_shape[1], b_shape[0]) not in {(info.shape[1], info.shape[0]), (info.shape[0], info.shape[1])}:
            raise Refused(f"cannot merge {label_adapter} into {label_base}: {module} is {list(info.shape)} in the "
                          f"base but the adapter maps {a_shape[1]} -> {b_shape[0]} features (trained on another "
                          "model?)")


def check_adapters_combinable(adapters: list[tuple[Path, str]]) -> None:
    """Refuse adapters that `merge-models` cannot combine: DoRA, modules_to_save, targeted parameters."""
    for folder, label in adapters:
        config = read_adapter_config(folder)
        if config.get("use_dora"):
            raise Refused(f"{label} is a DoRA adapter; merge-models combines plain LoRA adapters only "
                          "(merge it into its base with `tunedeck merge` first)")
        if config.get("modules_to_save"):
            raise Refused(f"{label} also trains whole modules ({', '.join(config['modules_to_save'])}); "
                          "merge-models cannot combine those (merge it with `tunedeck merge` first)")
        if config.get("target_parameters"):
            raise Refused(f"{label} targets parameters directly; merge-models cannot combine it")
