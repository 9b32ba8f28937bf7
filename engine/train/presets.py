"""Named starting points for a run configuration: partial config dicts laid over the schema's defaults."""

from __future__ import annotations

import difflib
from typing import Any

from engine.train.config.errors import ConfigError
from engine.train.config.overrides import merge
from engine.train.config.schema import RunConfig

# The adapter every LoRA/QLoRA preset uses (the schema's defaults, spelt out).
_LORA: dict[str, Any] = {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}


def _lora_one_epoch(
    objective: str, learning_rate: float, *, batch: tuple[int, int] = (2, 8), warmup: float = 0.1,
    **sections: dict[str, Any],
) -> dict[str, Any]:
    """The preference/reward presets' shared shape: LoRA, one cosine epoch at length 1024, their own section."""
    per_device, accum = batch
    return {
        "objective": objective,
        "method": "lora",
        "lora": dict(_LORA),
        **sections,
        "training": {
            "epochs": 1.0,
            "per_device_batch": per_device,
            "grad_accum": accum,
            "learning_rate": learning_rate,
            "scheduler": "cosine",
            "warmup": warmup,
            "max_length": 1024,
        },
    }


# Each preset is a partial RunConfig dict; fields it leaves out take the schema defaults (the LoRA recipe).
PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "method": "lora",
        "lora": {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": "all-linear"},
        "training": {
            "epochs": 1.0,
            "max_steps": 8,
            "per_device_batch": 2,
            "grad_accum": 1,
            "learning_rate": 2e-4,
            "scheduler": "constant",
            "warmup": 0.0,
            "max_length": 128,
            "packing": False,  # a smoke step stays a few examples (packed, each step would fill max_length rows)
            "gradient_checkpointing": False,
            "logging_steps": 1,
            "save_steps": 4,
            "eval_steps": 4,
            "save_total_limit": 2,
        },
    },
    "lora": {
        "objective": "sft",
        "method": "lora",
        "lora": dict(_LORA),
        "training": {
            "epochs": 3.0,
            "per_device_batch": 4,
            "grad_accum": 4,
            "learning_rate": 2e-4,
            "scheduler": "cosine",
            "warmup": 0.03,
            "weight_decay": 0.0,
        },
    },
    "qlora": {
        "objective": "sft",
        "method": "qlora",
        "lora": dict(_LORA),
        "quant": {"quant_type": "nf4", "double_quant": True, "compute_dtype": "auto"},
        "training": {
            "epochs": 3.0,
            "per_device_batch": 4,
            "grad_accum": 4,
            "learning_rate": 2e-4,
            "scheduler": "cosine",
            "warmup": 0.03,
            "gradient_checkpointing": True,
        },
    },
    "full": {
        "objective": "sft",
        "method": "full",
        "training": {
            "epochs": 3.0,
            "per_device_batch": 2,
            "grad_accum": 8,
            "learning_rate": 2e-5,
            "scheduler": "cosine",
            "warmup": 0.03,
            "weight_decay": 0.0,
            "gradient_checkpointing": True,
            "save_total_limit": 2,
        },
    },
    "dpo": _lora_one_epoch("dpo", 5e-6, dpo={"beta": 0.1}),
    "orpo": _lora_one_epoch("orpo", 5e-5, orpo={"beta": 0.1}),
    "kto": _lora_one_epoch(
        "kto", 5e-6, batch=(4, 4), kto={"beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.0}
    ),
    "reward": _lora_one_epoch("reward", 1e-4, batch=(4, 4), warmup=0.03),
    "grpo": _lora_one_epoch(
        "grpo", 1e-5, batch=(4, 2), warmup=0.03,
        grpo={"rewards": ["exact_answer"], "num_generations": 4, "max_completion_length": 256,
              "temperature": 1.0, "beta": 0.04},
    ),
}

PRESET_TITLES: dict[str, str] = {
    "smoke": "Smoke test: 8 steps, to check the pipeline end to end",
    "lora": "LoRA default: r16, alpha 32, lr 2e-4, cosine, 3 epochs",
    "qlora": "QLoRA default: LoRA on a 4-bit NF4 base (least memory)",
    "full": "Full fine-tune: all weights, lr 2e-5, 3 epochs, most VRAM",
    "dpo": "DPO default: preference pairs, LoRA, lr 5e-6, beta 0.1",
    "orpo": "ORPO default: pairs, no reference model, LoRA, lr 5e-5",
    "kto": "KTO default: good/bad answers or pairs, LoRA, lr 5e-6",
    "reward": "Reward model: a scorer trained on preference pairs",
    "grpo": "GRPO default: 4 samples per prompt, exact-answer reward",
}

_ALIASES = {"smoke test": "smoke", "smoketest": "smoke", "lora default": "lora", "qlora default": "qlora",
            "dpo default": "dpo", "orpo default": "orpo", "kto default": "kto", "grpo default": "grpo",
            "reward model": "reward", "rm": "reward", "full default": "full", "full fine tune": "full",
            "full finetune": "full"}


def preset_name(name: str) -> str:
    """The canonical preset key for ``name`` ("LoRA default" -> "lora"); ConfigError listing presets if unknown."""
    key = " ".join(name.strip().lower().replace("_", " ").replace("-", " ").split())
    key = _ALIASES.get(key, key)
    if key in PRESETS:
        return key
    hint = difflib.get_close_matches(key, list(PRESETS), n=1, cutoff=0.6)
    suffix = f" (did you mean '{hint[0]}'?)" if hint else ""
    raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}{suffix}")


def preset_config(preset: str, /, model: str = "", dataset: str = "", **overrides: Any) -> RunConfig:
    """The preset for ``model`` and ``dataset``; ``overrides`` use field names (``name=`` is the run name), aliases
    (lr=, r=, epochs=) or whole sections (``training={"seed": 1}``); errors are ConfigErrors naming the field."""
    key = preset_name(preset)
    cfg = merge(RunConfig(), {**PRESETS[key], "model": model, "dataset": dataset}, source=f"preset {key}")
    return merge(cfg, overrides, source=f"preset {key}") if overrides else cfg
