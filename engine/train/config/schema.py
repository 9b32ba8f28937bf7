"""The run configuration's schema: the pydantic ``RunConfig``, its sections and the cross-field rules.

Cheap to import (pydantic only): the CLI validates a run.yaml without loading torch.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from engine.train.config.errors import show_value
from store.names import name_problem

__all__ = [
    "ALIASES",
    "SECTIONS",
    "DpoSettings",
    "GrpoSettings",
    "KtoSettings",
    "LoraSettings",
    "OrpoSettings",
    "QuantSettings",
    "RunConfig",
    "TrainingSettings",
    "default_config",
    "field_paths",
    "objective_problems",
]


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
                raise ValueError(f"must be 'all-linear' or a list of module names; {show_value(item)} is not one")
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


SECTIONS: dict[str, type[_Section]] = {
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
        section = SECTIONS.get(name)
        out.extend(f"{name}.{sub}" for sub in section.model_fields) if section else out.append(name)
    return out


def default_config() -> RunConfig:
    """The configuration every field defaults to (the LoRA recipe, with model and dataset still to fill in)."""
    return RunConfig()


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
