"""The run configuration of a training job: schema, YAML I/O, --set overrides and recommended-range warnings.

Cheap to import (pydantic and yaml only): the CLI validates a run.yaml without loading torch.

Every problem a user can cause surfaces as a ``ConfigError`` whose message holds one line per problem, e.g.
``run.yaml: training.learning_rate: must be greater than 0 (got -1)``; never a pydantic dump.
"""

from __future__ import annotations

import difflib
import re
import textwrap
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from store.errors import TunedeckError
from store.names import name_problem

__all__ = [
    "ALIASES",
    "ConfigError",
    "DpoSettings",
    "GrpoSettings",
    "KtoSettings",
    "LoraSettings",
    "OrpoSettings",
    "QuantSettings",
    "RunConfig",
    "TrainingSettings",
    "apply_overrides",
    "config_warnings",
    "default_config",
    "detect_precision",
    "dump_yaml",
    "field_paths",
    "load_config",
    "merge",
    "objective_problems",
    "parse_config",
    "parse_yaml",
    "require_complete",
    "resolve_compute_dtype",
    "resolve_precision",
    "template_yaml",
    "warnings",
]


class ConfigError(TunedeckError):
    """A run configuration cannot be used; ``problems`` holds one ready-to-print line per problem."""

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


# ---------------------------------------------------------------------------------------------------------------
# Schema
# ---------------------------------------------------------------------------------------------------------------


def _reject_bool(value: Any) -> Any:
    # pydantic's lax mode turns true/false into 1/0; in a config that is always a mistake.
    if isinstance(value, bool):
        raise ValueError("must be a number")
    return value


Int = Annotated[int, BeforeValidator(_reject_bool)]
Float = Annotated[float, BeforeValidator(_reject_bool)]

Objective = Literal["sft", "dpo", "kto", "orpo", "reward", "grpo"]
GrpoReward = Literal["exact_answer", "format", "length"]
Method = Literal["lora", "qlora", "full"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
Scheduler = Literal["linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial"]
Strategy = Literal["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"]
Offload = Literal["none", "optimizer", "all"]
Tracker = Literal["tensorboard", "wandb", "mlflow"]

_MODULE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class LoraSettings(_Section):
    """LoRA adapter (used when method is lora or qlora)."""

    r: Int = Field(16, ge=1, le=1024, description="LoRA rank. Recommended 8..64.")
    alpha: Int = Field(32, ge=1, le=4096, description="LoRA alpha (scaling). Usually r..4r; 2r is common.")
    dropout: Float = Field(
        0.05, ge=0, lt=1, description="Dropout on the LoRA layers, 0 <= dropout < 1; 0.05 is typical."
    )
    target_modules: Literal["all-linear"] | list[str] = Field(
        "all-linear",
        description="Layers that get adapters: all-linear (every linear layer except the output head) "
        "or a list of module names, e.g. [q_proj, k_proj, v_proj, o_proj].",
    )

    @field_validator("target_modules", mode="before")
    @classmethod
    def _target_modules(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text == "all-linear":
                return text
            if text.lower().replace("_", "-").replace(" ", "-") in {"all-linear", "all", "alllinear"}:
                raise ValueError("must be 'all-linear' (with a hyphen) or a list of module names")
            value = [part.strip() for part in text.split(",")]  # "q_proj,v_proj" is a list of two
        if not isinstance(value, list) or not value:
            raise ValueError("must be 'all-linear' or a non-empty list of module names")
        names: list[str] = []
        for item in value:
            if not isinstance(item, str) or not _MODULE_NAME.match(item):
                raise ValueError(f"must be 'all-linear' or a list of module names; {_show(item)} is not one")
            if item not in names:
                names.append(item)
        return names


class QuantSettings(_Section):
    """4-bit quantization of the base model (used when method is qlora)."""

    quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type: nf4 (recommended) or fp4.")
    double_quant: bool = Field(True, description="Also quantize the quantization constants (saves ~0.4 bit/weight).")
    compute_dtype: Precision = Field(
        "auto",
        description="dtype of the 4-bit matmuls: auto (bf16 on a GPU that has it, fp16 on other GPUs, "
        "fp32 on CPU), bf16, fp16 or fp32.",
    )


class TrainingSettings(_Section):
    """Optimization, length, precision and checkpoint intervals."""

    epochs: Float = Field(
        3.0, gt=0, le=1000, description="Passes over the dataset (may be fractional). Recommended 1..5. "
        "Ignored when max_steps > 0."
    )
    max_steps: Int = Field(
        -1, ge=-1, le=10_000_000, description="Stop after this many optimizer steps; -1 = use epochs."
    )
    per_device_batch: Int = Field(4, ge=1, le=4096, description="Sequences per device per step.")
    grad_accum: Int = Field(
        4, ge=1, le=4096, description="Steps to accumulate gradients over. Effective batch = per_device_batch x "
        "grad_accum x devices; recommended 8..64."
    )
    learning_rate: Float = Field(
        2e-4, gt=0, lt=1, description="Peak learning rate. Recommended 1e-5..3e-4 for LoRA/QLoRA, "
        "5e-6..1e-4 for full fine-tuning, 5e-7..5e-6 for DPO."
    )
    scheduler: Scheduler = Field(
        "cosine", description="Learning-rate schedule: linear, cosine, constant, constant_with_warmup, "
        "cosine_with_restarts or polynomial."
    )
    warmup: Float = Field(
        0.03, ge=0, lt=1, description="Fraction of the steps spent warming up the learning rate, 0 <= warmup < 1. "
        "Recommended 0.03..0.1."
    )
    weight_decay: Float = Field(0.0, ge=0, le=1, description="AdamW weight decay, 0..1; 0 to 0.1 is typical.")
    max_length: Int = Field(
        2048, ge=16, le=1_000_000, description="Longest sequence in tokens; longer examples are truncated."
    )
    packing: bool | Literal["auto"] = Field(
        "auto", description="SFT: pack several examples into each max_length row, padding-free (each example "
        "attends only to itself): auto = on where the attention implementation keeps examples apart, true, false."
    )
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = Field(
        "auto", description="Attention kernel: auto (flash_attention_2 when flash-attn is installed and a GPU is "
        "present, else sdpa), sdpa, eager or flash_attention_2."
    )
    optimizer: Literal["auto", "adamw_torch", "adamw_torch_fused"] = Field(
        "auto", description="auto (fused AdamW on a GPU, adamw_torch on the CPU), adamw_torch or adamw_torch_fused."
    )
    liger_kernel: bool | Literal["auto"] = Field(
        "auto", description="Liger's fused kernels (RMSNorm, RoPE, SwiGLU, fused linear cross-entropy): auto = on "
        "when a GPU is present and liger-kernel is installed, true, false."
    )
    torch_compile: bool = Field(False, description="Compile the model with torch.compile (slow start, faster steps).")
    gradient_checkpointing: bool = Field(
        True, description="Recompute activations in the backward pass: much less memory, ~30% slower."
    )
    precision: Precision = Field(
        "auto", description="auto (bf16 on a GPU that has it, fp16 on other GPUs, fp32 on CPU), bf16, fp16 or fp32."
    )
    eval_steps: Int = Field(
        100, ge=0, le=10_000_000, description="Evaluate on the eval split every N steps; 0 = never."
    )
    save_steps: Int = Field(100, ge=1, le=10_000_000, description="Save a checkpoint every N steps.")
    logging_steps: Int = Field(10, ge=1, le=10_000_000, description="Log loss and learning rate every N steps.")
    save_total_limit: Int = Field(3, ge=1, le=1000, description="Checkpoints to keep; older ones are deleted.")
    seed: Int = Field(42, ge=0, le=2**32 - 1, description="Random seed for shuffling, dropout and initialization.")
    assistant_only_loss: bool = Field(
        True, description="SFT: compute the loss on assistant replies only (false = on every token)."
    )


    @field_validator("packing", "liger_kernel", mode="before")
    @classmethod
    def _auto_bool(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in {"auto", "true", "false"}:
            return {"auto": "auto", "true": True, "false": False}[value.strip().lower()]
        if not isinstance(value, bool) and value != "auto":
            raise ValueError("must be true or false")  # or auto, the default
        return value

    @field_validator("max_steps")
    @classmethod
    def _max_steps(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must be -1 (train for `epochs`) or a positive number of steps")
        return value


class DpoSettings(_Section):
    """Direct preference optimization (used when objective is dpo)."""

    beta: Float = Field(
        0.1, gt=0, le=10, description="How far the model may drift from the reference model; "
        "recommended 0.01..0.5, 0.1 is typical."
    )


class KtoSettings(_Section):
    """Kahneman-Tversky optimization (used when objective is kto)."""

    beta: Float = Field(
        0.1, gt=0, le=10, description="How far the model may drift from the reference model; 0.1 is typical."
    )
    desirable_weight: Float = Field(
        1.0, gt=0, le=100, description="Weight of the loss on good (label true) answers; raise it when they are "
        "fewer than the bad ones."
    )
    undesirable_weight: Float = Field(
        1.0, gt=0, le=100, description="Weight of the loss on bad (label false) answers."
    )


class OrpoSettings(_Section):
    """Odds-ratio preference optimization (used when objective is orpo)."""

    beta: Float = Field(
        0.1, gt=0, le=10, description="Weight of the odds-ratio term against the SFT loss on the chosen answers "
        "(lambda in the paper); recommended 0.05..0.5."
    )


class GrpoSettings(_Section):
    """Group relative policy optimization with reward functions (used when objective is grpo)."""

    rewards: list[GrpoReward] = Field(
        default_factory=lambda: ["exact_answer"],
        description="Built-in rewards: exact_answer (1 when the answer equals the dataset's answer_field), format "
        "(1 when the answer matches format_regex) and length (1 at length_target characters, less further away).",
    )
    answer_field: str = Field(
        "answer", max_length=200, description="exact_answer: the dataset field holding the expected answer "
        "(answer = the reference reply of a chat or the chosen reply of a preference pair).",
    )
    format_regex: str = Field(
        "", max_length=2000, description="format: a Python regular expression the whole answer must match, "
        r"e.g. '(?s)<think>.*</think>\s*<answer>.*</answer>'.",
    )
    length_target: Int = Field(
        200, ge=1, le=1_000_000, description="length: the answer length in characters that earns the full reward."
    )
    reward_file: str = Field(
        "", max_length=1000, description="A Python file of your own reward functions, each "
        "`def name(completions, **kwargs) -> list[float]`: one number per completion; kwargs hold the prompts and "
        "every dataset field by name (e.g. answer). The functions used are named in reward_functions.",
    )
    reward_functions: list[str] = Field(
        default_factory=list, description="Names of functions in reward_file to use as rewards."
    )
    reward_model: str = Field(
        "", max_length=1000, description="A reward-model artifact (id or name, from an objective: reward run) "
        "whose score is a reward.",
    )
    num_generations: Int = Field(
        4, ge=2, le=1024, description="Answers sampled per prompt; rewards are compared within each group. "
        "per_device_batch x grad_accum must be a multiple of it."
    )
    max_completion_length: Int = Field(
        128, ge=1, le=100_000, description="Longest sampled answer in tokens."
    )
    temperature: Float = Field(1.0, gt=0, le=10, description="Sampling temperature of the answers.")
    beta: Float = Field(
        0.04, ge=0, le=10, description="KL penalty against the reference model; 0 skips the reference model "
        "(faster, no kl metric)."
    )

    @field_validator("rewards", "reward_functions", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # "exact_answer, length" from --set or the form is a list of two
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("format_regex")
    @classmethod
    def _regex(cls, value: str) -> str:
        if value:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @field_validator("reward_functions")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not name.isidentifier():
                raise ValueError(f"{name!r} is not a Python function name")
        return value


class RunConfig(_Section):
    """Everything a training run needs besides the data itself."""

    name: str = Field("", max_length=200, description="Optional run name; empty lets tunedeck choose one.")
    model: str = Field(
        "", max_length=1000, description="REQUIRED. Base model: a local directory or a Hugging Face hub id, "
        "e.g. HuggingFaceTB/SmolLM2-135M-Instruct."
    )
    dataset: str = Field("", max_length=1000, description="REQUIRED. The project's dataset to train on: name or id.")
    objective: Objective = Field(
        "sft", description="sft (learn from conversations), dpo, orpo (prompt/chosen/rejected pairs), kto "
        "(answers labelled good or bad, or pairs), reward (train a reward model on pairs) or grpo (sample answers "
        "to prompts and learn from reward functions)."
    )
    method: Method = Field(
        "lora", description="lora (adapter on a 16/32-bit base), qlora (adapter on a 4-bit base: least memory) "
        "or full (update every weight: most memory)."
    )
    lora: LoraSettings = Field(default_factory=LoraSettings, description="LoRA adapter (method lora or qlora).")
    quant: QuantSettings = Field(default_factory=QuantSettings, description="4-bit base model (method qlora).")
    training: TrainingSettings = Field(default_factory=TrainingSettings, description="Optimization and checkpoints.")
    dpo: DpoSettings = Field(default_factory=DpoSettings, description="Preference training (objective dpo).")
    kto: KtoSettings = Field(default_factory=KtoSettings, description="Good/bad answer training (objective kto).")
    orpo: OrpoSettings = Field(default_factory=OrpoSettings, description="Odds-ratio preference (objective orpo).")
    grpo: GrpoSettings = Field(default_factory=GrpoSettings, description="Reward-driven sampling (objective grpo).")
    devices: list[Annotated[int, Field(ge=0, le=1023)]] = Field(
        default_factory=list, description="GPU indices to train on, e.g. [0, 1]; [] = automatic "
        "(a GPU if there is one, else the CPU)."
    )
    strategy: Strategy = Field(
        "ddp", description="How several GPUs share the work: ddp, fsdp, deepspeed_zero2 or deepspeed_zero3. "
        "Ignored on one device."
    )
    offload: Offload = Field(
        "none", description="Move state to CPU memory to fit bigger models on several GPUs: optimizer (its states; "
        "deepspeed) or all (also the parameters; fsdp or deepspeed_zero3). none keeps everything on the GPUs."
    )
    cpu_processes: int = Field(
        1, ge=1, le=64, description="Without GPUs: training processes on the CPU (DDP over gloo). 1 trains in "
        "one process; more runs the same data-parallel path as several GPUs."
    )
    trust_remote_code: bool = Field(
        False, description="Run Python code shipped with the model (a few architectures need it). "
        "Only for models you trust."
    )
    report_to: list[Tracker] = Field(
        default_factory=list, description="Experiment trackers that also receive the metrics: any of tensorboard, "
        "wandb, mlflow ([] = none; the store always has them). Each writes under the run's job folder "
        "(wandb honours WANDB_MODE=offline; mlflow uses MLFLOW_TRACKING_URI when set)."
    )

    @model_validator(mode="before")
    @classmethod
    def _blank_means_default(cls, data: Any) -> Any:
        # `lora:` or `model:` left empty in YAML loads as None; read it as "not set".
        if isinstance(data, dict):
            data = dict(data)
            for key in ("name", "model", "dataset"):
                if key in data and data[key] is None:
                    data[key] = ""
            for key in ("lora", "quant", "training", "dpo", "kto", "orpo", "grpo"):
                if key in data and data[key] is None:
                    data[key] = {}
            if "devices" in data and data["devices"] is None:
                data["devices"] = []
            if "report_to" in data and data["report_to"] is None:
                data["report_to"] = []
        return data

    @field_validator("objective", mode="before")
    @classmethod
    def _objective(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "ppo":
            raise ValueError("ppo is not available: TRL 1.16 ships no PPO trainer; for RLHF with a reward model use "
                             "objective grpo with grpo.reward_model set to your reward-model artifact")
        return value

    @field_validator("name", "model", "dataset", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)  # `dataset: 3` refers to dataset number 3
        if isinstance(value, str):
            value = value.strip()
            if any(ord(ch) < 32 for ch in value):
                raise ValueError("must be a single line of text")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        # The same rules as every other name; its own length limit stays, and it may be empty.
        problem = name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("devices", mode="before")
    @classmethod
    def _devices(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a list of GPU indices, e.g. [0, 1]")
        if isinstance(value, int):
            return [value]
        if isinstance(value, str):  # "0,1" as in CUDA_VISIBLE_DEVICES
            parts = [p.strip() for p in value.split(",") if p.strip()]
            if not all(p.isdigit() for p in parts):
                raise ValueError("must be a list of GPU indices, e.g. [0, 1]")
            return [int(p) for p in parts]
        if isinstance(value, list):
            if any(isinstance(v, bool) for v in value):
                raise ValueError("GPU indices are whole numbers like 0 or 1")
        return value

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to(cls, value: Any) -> Any:
        if isinstance(value, str):  # "tensorboard,wandb" from --set or the form; "none" as in transformers
            value = [p.strip() for p in value.split(",") if p.strip() and p.strip().lower() != "none"]
        return value

    @field_validator("report_to")
    @classmethod
    def _unique_trackers(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @field_validator("devices")
    @classmethod
    def _unique_devices(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("lists the same GPU more than once")
        return value


_SECTIONS: dict[str, type[_Section]] = {
    name: field.annotation  # type: ignore[misc]
    for name, field in RunConfig.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)
}

# Short names accepted by --set and preset_config(**overrides); any unambiguous field name works too.
ALIASES: dict[str, str] = {
    "lr": "training.learning_rate",
    "r": "lora.r",
    "rank": "lora.r",
    "alpha": "lora.alpha",
    "dropout": "lora.dropout",
    "epochs": "training.epochs",
    "max_steps": "training.max_steps",
    "steps": "training.max_steps",
    "batch": "training.per_device_batch",
    "batch_size": "training.per_device_batch",
    "grad_accum": "training.grad_accum",
    "accum": "training.grad_accum",
    "max_length": "training.max_length",
    "beta": "dpo.beta",
    "warmup": "training.warmup",
    "seed": "training.seed",
    "precision": "training.precision",
}


def field_paths() -> list[str]:
    """Every settable leaf field as a dotted path, in schema order (``name``, ..., ``training.seed``, ...)."""
    out: list[str] = []
    for name in RunConfig.model_fields:
        section = _SECTIONS.get(name)
        out.extend(f"{name}.{sub}" for sub in section.model_fields) if section else out.append(name)
    return out


def default_config() -> RunConfig:
    """The configuration every field defaults to (the LoRA recipe, with model and dataset still to fill in)."""
    return RunConfig()


# ---------------------------------------------------------------------------------------------------------------
# Turning pydantic errors into one readable line each
# ---------------------------------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", value.strip()):
            return value.strip()  # YAML 1.1 reads 2e-4 as a string; show it as the user wrote it
        text = repr(value)
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, dict):
        text = "a mapping"
    elif isinstance(value, list):
        text = "[" + ", ".join(_show(v) for v in value) + "]"
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _dotted(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _suggest(word: str, choices: Iterable[str]) -> str | None:
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def _suggest_field(parent: tuple[str, ...], key: str) -> str | None:
    """The field a user most likely meant by an unknown key under ``parent`` (a path, () for the top level)."""
    here = _SECTIONS.get(parent[0]) if parent else RunConfig
    if here is None or len(parent) > 1:
        return None
    # A known field in another place: `learning_rate:` at the top level, `beta:` under training, `lr:`.
    everywhere = field_paths()
    if key in ALIASES:
        return ALIASES[key]
    exact = [p for p in everywhere if p.rsplit(".", 1)[-1] == key]
    if len(exact) == 1:
        return exact[0]
    local = _suggest(key, here.model_fields)
    if local:
        return local
    leaf = _suggest(key, {p.rsplit(".", 1)[-1]: p for p in everywhere})
    return next((p for p in everywhere if p.rsplit(".", 1)[-1] == leaf), None) if leaf else None


def _problem(err: Mapping[str, Any]) -> str:
    """One error as ``path: what was expected (got value)``."""
    loc = tuple(err.get("loc", ()))
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    path = _dotted(loc) or "(top level)"
    if kind in {"extra_forbidden", "invalid_key"}:
        key = str(loc[-1]) if loc else "?"
        path = _dotted((*loc[:-1], key))
        hint = _suggest_field(tuple(str(p) for p in loc[:-1]), key)
        return f"{path}: unknown field '{key}'" + (f" (did you mean '{hint}'?)" if hint else "")
    if kind == "missing":
        return f"{path}: required field is missing"
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        text = f"{path}: must be one of {', '.join(choices)} (got {_show(value)})"
        hint = _suggest(str(value), choices) if isinstance(value, str) else None
        return text + (f"; did you mean '{hint}'?" if hint else "")
    expected = {
        "greater_than": lambda: f"must be greater than {_num(ctx.get('gt'))}",
        "greater_than_equal": lambda: f"must be at least {_num(ctx.get('ge'))}",
        "less_than": lambda: f"must be less than {_num(ctx.get('lt'))}",
        "less_than_equal": lambda: f"must be at most {_num(ctx.get('le'))}",
        "int_parsing": lambda: "must be a whole number",
        "int_type": lambda: "must be a whole number",
        "int_from_float": lambda: "must be a whole number",
        "float_parsing": lambda: "must be a number",
        "float_type": lambda: "must be a number",
        "finite_number": lambda: "must be a finite number",
        "bool_parsing": lambda: "must be true or false",
        "bool_type": lambda: "must be true or false",
        "string_type": lambda: "must be text",
        "string_too_long": lambda: f"must be at most {ctx.get('max_length')} characters",
        "list_type": lambda: "must be a list",
        "too_long": lambda: f"must have at most {ctx.get('max_length')} items",
        "model_type": lambda: "must be a mapping of fields (key: value lines)",
        "model_attributes_type": lambda: "must be a mapping of fields (key: value lines)",
        "dict_type": lambda: "must be a mapping of fields (key: value lines)",
    }.get(kind)
    if expected is not None:
        text = expected()
    else:
        text = str(err.get("msg", kind))
        for prefix in ("Value error, ", "Assertion failed, "):
            text = text.removeprefix(prefix)
    if kind in {"model_type", "model_attributes_type", "dict_type", "list_type"} and isinstance(value, dict | list):
        got = "a list" if isinstance(value, list) else "a mapping"
        return f"{path}: {text} (got {got})"
    return f"{path}: {text} (got {_show(value)})"


# ---------------------------------------------------------------------------------------------------------------
# Parsing and loading
# ---------------------------------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (plain PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            first = seen.get(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a key must be a plain value, not a list or mapping", key_node.start_mark
            ) from None
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key '{key}' (first given on line {first + 1})", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _yaml_error(source: str, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
    text = f"{where}: invalid YAML: {problem}"
    if context and getattr(exc, "context_mark", None) is not None and exc.context_mark is not mark:
        text += f" ({context} on line {exc.context_mark.line + 1})"
    return ConfigError(text)


def parse_yaml(text: str, source: str = "<config>") -> Any:
    """YAML text to Python data; a syntax error becomes a ConfigError naming ``source:line:column``."""
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None


def parse_config(data: Any, source: str = "<config>") -> RunConfig:
    """Validate loaded data (normally a dict) into a RunConfig, or raise ConfigError listing every problem."""
    if data is None:
        raise ConfigError(f"{source}: the configuration is empty; expected fields such as model: and dataset: "
                          "(`tunedeck run template` prints a complete example)")
    if not isinstance(data, dict):
        kind = "a list" if isinstance(data, list) else f"{_show(data)}"
        raise ConfigError(f"{source}: expected a mapping of fields (key: value lines) at the top level, got {kind}")
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_problem(e)}" for e in exc.errors(include_url=False)) from None
    problems = objective_problems(cfg)
    if problems:
        raise ConfigError(f"{source}: {p}" for p in problems)
    return cfg


def objective_problems(cfg: RunConfig) -> list[str]:
    """Settings that each are valid but do not work together for the objective, one ``path: why`` line each."""
    out: list[str] = []
    t, g = cfg.training, cfg.grpo
    processes = max(1, len(cfg.devices), cfg.cpu_processes)
    if cfg.objective == "kto" and t.per_device_batch < 2:
        out.append(f"training.per_device_batch: KTO needs at least 2 (its KL estimate pairs each answer with "
                   f"another prompt's in the same batch) (got {t.per_device_batch})")
    if cfg.objective == "reward" and cfg.method == "qlora":
        out.append("method: a reward model trains with lora or full (got qlora)")
    if cfg.objective == "grpo":
        if not (g.rewards or g.reward_functions or g.reward_model):
            out.append("grpo.rewards: GRPO needs at least one reward: a built-in (exact_answer, format, length), "
                       "grpo.reward_functions from grpo.reward_file, or grpo.reward_model")
        if "format" in g.rewards and not g.format_regex:
            out.append("grpo.format_regex: the format reward needs a regular expression")
        if g.reward_functions and not g.reward_file:
            out.append("grpo.reward_file: required by grpo.reward_functions (the Python file that defines them)")
        if g.reward_file and not g.reward_functions:
            out.append("grpo.reward_functions: name the functions of grpo.reward_file to use")
        batch = t.per_device_batch * t.grad_accum * processes
        if batch % g.num_generations:
            out.append(f"grpo.num_generations: {g.num_generations} must divide the batch of sampled answers, "
                       f"per_device_batch x grad_accum x processes = {batch}")
    return out


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a run.yaml; every problem is a ConfigError whose lines start with the path."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except IsADirectoryError:
        raise ConfigError(f"{source}: is a directory, not a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not a UTF-8 text file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
    return parse_config(parse_yaml(text, source), source)


def require_complete(cfg: RunConfig, source: str = "run config") -> None:
    """Raise ConfigError unless the fields the schema lets stay empty (model, dataset) are filled in."""
    missing = []
    if not cfg.model:
        missing.append(f"{source}: model: required: a local model directory or a hub id")
    if not cfg.dataset:
        missing.append(f"{source}: dataset: required: the name or id of one of the project's datasets")
    if missing:
        raise ConfigError(missing)


# ---------------------------------------------------------------------------------------------------------------
# Writing YAML
# ---------------------------------------------------------------------------------------------------------------


def dump_yaml(cfg: RunConfig) -> str:
    """Plain YAML of every field in schema order; ``parse_config(yaml.safe_load(dump_yaml(c))) == c``."""
    return yaml.safe_dump(cfg.model_dump(mode="python"), sort_keys=False, allow_unicode=True, width=1000)


def _scalar(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=1000)
    return text.removesuffix("\n...\n").rstrip("\n")


_TEMPLATE_HEADER = """\
# tunedeck run configuration.
#   tunedeck run new PROJECT --config run.yaml            start a run from this file
#   tunedeck run new PROJECT --config run.yaml --set lr=1e-4 --set lora.r=32
# Fields left out take the values shown here (the LoRA recipe). Values outside the
# recommended ranges are allowed; tunedeck lists them as warnings before launch.
"""


def template_yaml(cfg: RunConfig | None = None) -> str:
    """``cfg`` (default: the default config) as YAML with a comment on every field; parses back to ``cfg``."""
    cfg = cfg if cfg is not None else default_config()
    lines = _TEMPLATE_HEADER.splitlines()

    def render(model: BaseModel, indent: int) -> None:
        pad = " " * indent
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if indent == 0:
                lines.append("")
            for line in textwrap.wrap(field.description or "", width=110 - indent):
                lines.append(f"{pad}# {line}")
            if isinstance(value, BaseModel):
                lines.append(f"{pad}{name}:")
                render(value, indent + 2)
            else:
                lines.append(f"{pad}{name}: {_scalar(value)}")

    render(cfg, 0)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Overrides (--set FIELD=VALUE) and merging
# ---------------------------------------------------------------------------------------------------------------


def _resolve_path(key: str) -> list[str]:
    """A user's field name (dotted path, alias or unambiguous leaf name) as a list of path parts."""
    key = key.strip()
    if "." in key:
        return [p.strip() for p in key.split(".")]
    if key in RunConfig.model_fields:
        return [key]
    if key in ALIASES:
        return ALIASES[key].split(".")
    matches = [p for p in field_paths() if p.rsplit(".", 1)[-1] == key]
    return matches[0].split(".") if len(matches) == 1 else [key]


def _field_annotation(parts: list[str]) -> Any:
    section = _SECTIONS.get(parts[0]) if len(parts) == 2 else None
    model: type[BaseModel] | None = section if len(parts) == 2 else (RunConfig if len(parts) == 1 else None)
    if model is None or parts[-1] not in model.model_fields:
        return None
    return model.model_fields[parts[-1]].annotation


def _parse_value(parts: list[str], raw: str) -> Any:
    annotation = _field_annotation(parts)
    if annotation is str:
        return raw.strip()  # model=1234 stays text
    listed = {"target_modules", "devices", "rewards", "reward_functions", "report_to"}
    if parts[-1] in listed and not raw.strip().startswith("["):
        return raw.strip()  # the field itself splits "q_proj,v_proj" / "0,1"
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def _set(data: dict[str, Any], parts: list[str], value: Any, source: str) -> None:
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}  # an unknown section; validation names it
        elif not isinstance(child, dict):
            raise ConfigError(f"{source}: {'.'.join(parts)}: '{'.'.join(parts[: i + 1])}' has no sub-fields")
        node = child
    leaf = parts[-1]
    if isinstance(value, dict) and isinstance(node.get(leaf), dict):
        node[leaf] = {**node[leaf], **value}
    else:
        node[leaf] = value


def merge(cfg: RunConfig | Mapping[str, Any], updates: Mapping[str, Any], source: str = "<config>") -> RunConfig:
    """``cfg`` with ``updates`` applied: keys are dotted paths, aliases or field names; a dict updates a section."""
    data = cfg.model_dump(mode="python") if isinstance(cfg, RunConfig) else _deepcopy(dict(cfg))
    for key, value in updates.items():
        _set(data, _resolve_path(key), _deepcopy(value), source)
    return parse_config(data, source)


def apply_overrides(cfg: RunConfig, overrides: Iterable[str], source: str = "--set") -> RunConfig:
    """Apply ``FIELD=VALUE`` strings (values read as YAML scalars; aliases such as lr, r, epochs, batch allowed)."""
    data = cfg.model_dump(mode="python")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{source}: {item!r}: expected FIELD=VALUE, e.g. training.learning_rate=1e-4")
        parts = _resolve_path(key)
        if any(not p for p in parts):
            raise ConfigError(f"{source}: {key.strip()!r}: not a field path")
        _set(data, parts, _parse_value(parts, raw), source)
    return parse_config(data, source)


def _deepcopy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deepcopy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deepcopy(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------------------------
# Recommended ranges
# ---------------------------------------------------------------------------------------------------------------

_LR_RANGES = {  # (low, high, label)
    "dpo": (5e-7, 5e-6, "DPO"),
    "kto": (5e-7, 5e-6, "KTO"),
    "orpo": (1e-6, 1e-4, "ORPO"),
    "grpo": (1e-6, 5e-5, "GRPO"),
    "full": (5e-6, 1e-4, "full fine-tuning"),
    "lora": (1e-5, 3e-4, "LoRA"),
}


def _outside(value: float, low: float, high: float) -> bool:
    return value < low * (1 - 1e-9) or value > high * (1 + 1e-9)


def warnings(cfg: RunConfig) -> list[str]:
    """Values that are valid but outside a good recipe's ranges, one line each, naming the field and the range."""
    out: list[str] = []
    t = cfg.training
    uses_lora = cfg.method in {"lora", "qlora"}
    kind = cfg.objective if cfg.objective in _LR_RANGES else ("lora" if uses_lora else "full")
    low, high, label = _LR_RANGES[kind]
    if _outside(t.learning_rate, low, high):
        out.append(f"training.learning_rate: {_num(t.learning_rate)} is outside the recommended range "
                   f"{_num(low)}..{_num(high)} for {label}")
    if uses_lora:
        r, alpha = cfg.lora.r, cfg.lora.alpha
        if _outside(r, 8, 64):
            out.append(f"lora.r: {r} is outside the recommended range 8..64")
        if _outside(alpha, r, 4 * r):
            out.append(f"lora.alpha: {alpha} is outside the recommended range r..4r ({r}..{4 * r}; 2r is common)")
    if t.max_steps <= 0 and _outside(t.epochs, 1, 5):
        out.append(f"training.epochs: {_num(t.epochs)} is outside the recommended range 1..5")
    gpus = max(1, len(cfg.devices), cfg.cpu_processes)
    effective = t.per_device_batch * t.grad_accum * gpus
    if _outside(effective, 8, 64):
        out.append(f"training.per_device_batch x training.grad_accum: effective batch {effective} "
                   f"({t.per_device_batch} x {t.grad_accum} x {gpus} device{'s' if gpus > 1 else ''}) "
                   "is outside the recommended range 8..64")
    if _outside(t.warmup, 0.03, 0.1):
        out.append(f"training.warmup: {_num(t.warmup)} is outside the recommended range 0.03..0.1")
    if cfg.objective == "dpo" and _outside(cfg.dpo.beta, 0.01, 0.5):
        out.append(f"dpo.beta: {_num(cfg.dpo.beta)} is outside the recommended range 0.01..0.5")
    if cfg.objective == "kto" and _outside(cfg.kto.beta, 0.01, 0.5):
        out.append(f"kto.beta: {_num(cfg.kto.beta)} is outside the recommended range 0.01..0.5")
    if cfg.objective == "orpo" and _outside(cfg.orpo.beta, 0.05, 0.5):
        out.append(f"orpo.beta: {_num(cfg.orpo.beta)} is outside the recommended range 0.05..0.5")
    if cfg.objective != "sft" and t.packing is True:
        out.append(f"training.packing: ignored for {cfg.objective.upper()} (only SFT packs examples)")
    if cfg.strategy != "ddp" and len(cfg.devices) == 1:
        out.append(f"strategy: {cfg.strategy} has no effect on a single device")
    if cfg.offload != "none" and cfg.strategy == "ddp":
        out.append(f"offload: {cfg.offload} has no effect with strategy ddp (use fsdp or deepspeed)")
    return out


config_warnings = warnings


# ---------------------------------------------------------------------------------------------------------------
# Precision
# ---------------------------------------------------------------------------------------------------------------


def _resolve(requested: str, field: str, cuda_available: bool, bf16_supported: bool) -> str:
    if requested == "auto":
        if not cuda_available:
            return "fp32"
        return "bf16" if bf16_supported else "fp16"
    if requested == "fp16" and not cuda_available:
        raise ConfigError(f"{field}: fp16 needs a CUDA GPU; use auto or fp32 on the CPU")
    if requested == "bf16" and cuda_available and not bf16_supported:
        raise ConfigError(f"{field}: this GPU does not support bf16; use auto or fp16")
    return requested


def resolve_precision(cfg: RunConfig, cuda_available: bool, bf16_supported: bool) -> str:
    """``training.precision`` made concrete: auto = bf16 on a GPU with bf16, fp16 on other GPUs, fp32 on CPU.

    An explicit choice is kept, except combinations the hardware cannot run (fp16 without a GPU, bf16 on a GPU
    without it), which raise ConfigError. bf16 on the CPU is allowed (it works, slowly).
    """
    return _resolve(cfg.training.precision, "training.precision", cuda_available, bf16_supported)


def resolve_compute_dtype(cfg: RunConfig, cuda_available: bool, bf16_supported: bool) -> str:
    """``quant.compute_dtype`` made concrete, by the same rule as ``resolve_precision``."""
    return _resolve(cfg.quant.compute_dtype, "quant.compute_dtype", cuda_available, bf16_supported)


def detect_precision(cfg: RunConfig) -> str:
    """``resolve_precision`` for this machine (imports torch)."""
    import torch

    cuda = bool(torch.cuda.is_available())
    return resolve_precision(cfg, cuda, cuda and bool(torch.cuda.is_bf16_supported()))
