"""A decoder's shape and parameter count from its config.json, without loading a weight.

Two ways to count, which the tests hold to the same figure:
- arithmetic over the config for llama-like families (`FAMILIES`): embeddings, attention with grouped
  query heads (num_key_value_heads), the gated MLP, norms, biases, tied or untied lm_head;
- `meta_layout`: transformers builds the model on the meta device (no memory, no weights) and the
  parameters are summed. Used for other decoder families when torch and transformers are installed.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.model_folder import read_json_object, read_model_config
from store.errors import NotFound, TunedeckError

REQUIRED = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class ModelConfigError(TunedeckError):
    """A config.json the estimator cannot read or does not understand."""


@dataclass(frozen=True)
class Family:
    """How a llama-like family differs from Llama in parameters."""

    qkv_bias: bool | None = None  # None: the config's attention_bias decides (q, k, v and o then)
    norms_per_layer: int = 2
    qk_norm: bool = False  # a per-head RMSNorm on q and k (head_dim each)
    fused: bool = False  # qkv_proj and gate_up_proj are single linears
    tied_default: bool = False
    head_dim_default: int | None = None  # when config.json has no head_dim


FAMILIES: dict[str, Family] = {
    "llama": Family(),
    "mistral": Family(),
    "granite": Family(),
    "qwen2": Family(qkv_bias=True),
    "qwen3": Family(qk_norm=True, head_dim_default=128),
    "gemma": Family(tied_default=True, head_dim_default=256),
    "gemma2": Family(norms_per_layer=4, tied_default=True, head_dim_default=256),
    "phi3": Family(fused=True),
}


@dataclass(frozen=True)
class Linear:
    """A kind of linear layer: its shape and how many the model has (LoRA targets these)."""

    name: str
    in_features: int
    out_features: int
    count: int


@dataclass(frozen=True)
class Layout:
    """What the memory estimate needs to know about a model."""

    model_type: str
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tied: bool
    linears: tuple[Linear, ...]  # every linear layer but the output head
    embed_params: int
    head_params: int  # 0 when tied to the embeddings
    other_params: int  # norms and biases
    source: str  # "arithmetic" or "meta"
    notes: tuple[str, ...] = field(default=())

    @property
    def linear_params(self) -> int:
        """Weights of the linear layers (what 4-bit and 8-bit quantization shrink)."""
        return sum(lin.in_features * lin.out_features * lin.count for lin in self.linears)

    @property
    def unquantized_params(self) -> int:
        """Embeddings, output head, norms and biases: kept in 16 or 32 bits under quantization."""
        return self.embed_params + self.head_params + self.other_params

    @property
    def total_params(self) -> int:
        return self.linear_params + self.unquantized_params

    def lora_params(self, rank: int, targets: Iterable[str] | None = None) -> int:
        """Parameters of rank-`rank` LoRA adapters on the linear layers named in `targets` (None: all)."""
        wanted = None if targets is None else set(targets)
        return sum(rank * (lin.in_features + lin.out_features) * lin.count for lin in self.linears
                   if wanted is None or lin.name in wanted)  # fmt: skip


# ----------------------------------------------------------------------------- reading config.json


def text_config(config: dict[str, Any]) -> dict[str, Any]:
    """The language model's part of a config (multimodal configs nest it under text_config)."""
    inner = config.get("text_config")
    if isinstance(inner, dict) and "hidden_size" not in config:
        return {"model_type": config.get("model_type", ""), **inner}
    return config


def read_config(model: str, download: bool = True) -> tuple[dict[str, Any], str]:
    """A model's config.json and where it was read: a model folder, a config.json file, or a hub id
    whose config.json is in the Hugging Face cache (or, with `download`, downloadable unless HF_HUB_OFFLINE
    is set)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return text_config(read_model_config(path)), str(path / "config.json")
    if not path.is_file():
        if not HUB_ID.match(model):
            raise NotFound(f"{model}: no such model folder")
        path = _hub_config(model) if download else _cached_hub_config(model)
    return text_config(read_json_object(path, "a model config")), str(path)


def _hub_config(repo: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download

        from engine.models.hub import REACH_TIMEOUT_S, check_hub_model

        with contextlib.suppress(NotFound):
            return _cached_hub_config(repo)
        check_hub_model(repo)  # offline or unreachable: one clear line within seconds, not minutes of retries
        return Path(hf_hub_download(repo, "config.json", etag_timeout=REACH_TIMEOUT_S))
    except ImportError:
        raise NotFound(f"{repo}: no such model folder") from None
    except TunedeckError:
        raise
    except Exception as exc:
        raise NotFound(f"{repo}: not a local folder nor in the Hugging Face cache "
                       f"({type(exc).__name__})") from None  # fmt: skip


def _cached_hub_config(repo: str) -> Path:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo, "config.json")
    except Exception:  # no huggingface_hub, or a repo id it refuses
        found = None
    if not isinstance(found, str):
        raise NotFound(f"{repo}: not a local folder nor in the Hugging Face cache")
    return Path(found)


def _int(config: dict[str, Any], key: str, default: int | None = None) -> int:
    value = config.get(key, default)
    if value is None:
        value = default
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ModelConfigError(f"config.json: {key} must be a positive integer, not {value!r}")
    return value


def check_supported(config: dict[str, Any]) -> None:
    """Refuse configs the estimator cannot handle, naming what is missing."""
    model_type = str(config.get("model_type") or "unknown")
    missing = [key for key in REQUIRED if key not in config]
    if missing:
        raise ModelConfigError(
            f"config.json (model_type {model_type!r}) lacks {', '.join(missing)}: the estimator handles llama-like "
            f"decoders ({', '.join(sorted(FAMILIES))} and others with these fields)"
        )
    experts = max(_opt_int(config, "num_local_experts"), _opt_int(config, "num_experts"))
    if experts > 1:
        raise ModelConfigError(f"model_type {model_type!r} is a mixture of experts ({experts} experts): "
                               "the estimator handles dense decoders only")  # fmt: skip


def _opt_int(config: dict[str, Any], key: str) -> int:
    value = config.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# ----------------------------------------------------------------------------- counting


def arithmetic_layout(config: dict[str, Any], family: Family | None = None) -> Layout:
    """The layout of a llama-like decoder computed from its config (`family` None: its model_type's, else Llama's)."""
    check_supported(config)
    model_type = str(config.get("model_type") or "llama")
    notes: tuple[str, ...] = ()
    if family is None:
        family = FAMILIES.get(model_type)
        if family is None:
            family = FAMILIES["llama"]
            notes = (f"model_type {model_type!r} counted as a Llama-style decoder",)
    h = _int(config, "hidden_size")
    layers = _int(config, "num_hidden_layers")
    heads = _int(config, "num_attention_heads")
    kv_heads = _int(config, "num_key_value_heads", heads)
    head_dim = _int(config, "head_dim", family.head_dim_default or h // heads)
    inter = _int(config, "intermediate_size")
    vocab = _int(config, "vocab_size")
    tied = bool(config.get("tie_word_embeddings", family.tied_default))
    q_out, kv_out = heads * head_dim, kv_heads * head_dim
    if family.fused:
        linears = [("qkv_proj", h, q_out + 2 * kv_out), ("o_proj", q_out, h), ("gate_up_proj", h, 2 * inter),
                   ("down_proj", inter, h)]  # fmt: skip
    else:
        linears = [("q_proj", h, q_out), ("k_proj", h, kv_out), ("v_proj", h, kv_out), ("o_proj", q_out, h),
                   ("gate_proj", h, inter), ("up_proj", h, inter), ("down_proj", inter, h)]  # fmt: skip
    attention_bias = bool(config.get("attention_bias", False))
    if family.qkv_bias is None:
        bias = (q_out + 2 * kv_out + h) if attention_bias else 0
    else:
        bias = (q_out + 2 * kv_out) if family.qkv_bias else 0
    if config.get("mlp_bias"):
        bias += 2 * inter + h
    norms = family.norms_per_layer * h + (2 * head_dim if family.qk_norm else 0)
    return Layout(
        model_type=model_type, hidden=h, layers=layers, heads=heads, kv_heads=kv_heads, head_dim=head_dim,
        intermediate=inter, vocab=vocab, tied=tied,
        linears=tuple(Linear(name, i, o, layers) for name, i, o in linears),
        embed_params=vocab * h, head_params=0 if tied else vocab * h,
        other_params=layers * (norms + bias) + h,  # + the final norm
        source="arithmetic", notes=notes,
    )  # fmt: skip


def meta_layout(config: dict[str, Any]) -> Layout:
    """The layout read off the model that transformers builds on the meta device (needs torch and transformers)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    check_supported(config)
    model_type = str(config.get("model_type") or "")
    kwargs = {k: v for k, v in config.items() if k != "model_type"}
    try:
        hf_config = AutoConfig.for_model(model_type, **kwargs)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(hf_config)
    except Exception as exc:
        raise ModelConfigError(f"transformers cannot build model_type {model_type!r}: {exc}") from None
    head = model.get_output_embeddings()
    embed = model.get_input_embeddings()
    tied = head is not None and head.weight is embed.weight
    counts: dict[tuple[str, int, int], int] = {}
    linear_bias = 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            key = (name.rsplit(".", 1)[-1], module.in_features, module.out_features)
            counts[key] = counts.get(key, 0) + 1
            linear_bias += module.bias.numel() if module.bias is not None else 0
    total = sum(p.numel() for p in model.parameters())
    linears = tuple(Linear(n, i, o, c) for (n, i, o), c in counts.items())
    embed_params = embed.weight.numel()
    head_params = 0 if tied or head is None else head.weight.numel()
    linear_params = sum(lin.in_features * lin.out_features * lin.count for lin in linears)
    h = _int(config, "hidden_size")
    heads = _int(config, "num_attention_heads")
    head_dim = int(getattr(hf_config, "head_dim", None) or h // heads)
    return Layout(
        model_type=model_type, hidden=h, layers=_int(config, "num_hidden_layers"), heads=heads,
        kv_heads=_int(config, "num_key_value_heads", heads), head_dim=head_dim,
        intermediate=_int(config, "intermediate_size"), vocab=_int(config, "vocab_size"), tied=tied,
        linears=linears, embed_params=embed_params, head_params=head_params,
        other_params=total - linear_params - embed_params - head_params, source="meta",
    )  # fmt: skip


def model_layout(config: dict[str, Any], meta: bool = True) -> Layout:
    """Arithmetic for known families; otherwise the meta-device count (when `meta`: it imports torch), or
    Llama arithmetic when that fails."""
    check_supported(config)
    if not meta or str(config.get("model_type") or "llama") in FAMILIES:
        return arithmetic_layout(config)
    try:
        return meta_layout(config)
    except (ImportError, ModelConfigError):
        return arithmetic_layout(config)
