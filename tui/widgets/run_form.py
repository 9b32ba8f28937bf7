"""The new-run form's model: its fields and their recommended ranges, and the work behind the form, run in
worker threads (the project's datasets and models, the schema's descriptions, presets, validation, the
YAML preview, the GPU estimate and queueing), through core/ (core.run_config, core.runs, core.estimate) as
`tunedeck run new` does; the engine loads inside those functions, in the worker.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from store.db import Store
from store.views import json_dict, run_choices

PRESETS = ("smoke", "lora", "qlora", "full", "dpo", "orpo", "kto", "reward", "grpo")
OBJECTIVES = ("sft", "dpo", "orpo", "kto", "reward", "grpo")
METHODS = ("lora", "qlora", "full")
SCHEDULERS = ("linear", "cosine", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
STRATEGIES = ("ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3")
OFFLOADS = ("none", "optimizer", "all")
DEMO_PROJECT = "demo"
DEMO_MODEL = "demo-llama"
MAX_MESSAGES = 4  # lines of problems and warnings under the form


@dataclass(frozen=True)
class FieldSpec:
    """One training field of the form: its config path, label, recommended range and widget kind."""

    path: str
    label: str
    hint: str
    kind: str = "value"  # value (typed text, read as a YAML scalar), list (comma-separated), choice or bool
    choices: tuple[str, ...] = ()
    only: tuple[str, ...] = ()  # the objectives it applies to (shown only for them); () = every objective

    @property
    def widget_id(self) -> str:
        return "f-" + self.path.replace(".", "-")


FIELDS: list[FieldSpec] = [
    FieldSpec("training.learning_rate", "Learning rate", "1e-5..3e-4 for LoRA/QLoRA"),  # follows the method
    FieldSpec("training.epochs", "Epochs", "1..5 (ignored when max steps > 0)"),
    FieldSpec("training.max_steps", "Max steps", "-1 = train for the epochs; else > 0"),
    FieldSpec("training.per_device_batch", "Batch", "per device; batch x accum: 8..64"),
    FieldSpec("training.grad_accum", "Grad accum", "effective batch = batch x accum: 8..64"),
    FieldSpec("training.max_length", "Max length", "tokens, >= 16; longer examples are cut"),
    FieldSpec("training.warmup", "Warmup", "fraction of the steps: 0.03..0.1"),
    FieldSpec("training.scheduler", "Scheduler", "cosine or linear are usual", "choice", SCHEDULERS),
    FieldSpec("lora.r", "LoRA r", "rank 8..64 (lora, qlora)"),
    FieldSpec("lora.alpha", "LoRA alpha", "r..4r; 2r is common"),
    FieldSpec("lora.dropout", "LoRA dropout", "0 <= dropout < 1; 0.05 is typical"),
    FieldSpec("dpo.beta", "DPO beta", "0.01..0.5; 0.1 is typical", only=("dpo",)),
    FieldSpec("orpo.beta", "ORPO beta", "odds-ratio weight: 0.05..0.5", only=("orpo",)),
    FieldSpec("kto.beta", "KTO beta", "0.01..0.5; 0.1 is typical", only=("kto",)),
    FieldSpec("kto.desirable_weight", "Good weight", "loss weight of label-true answers", only=("kto",)),
    FieldSpec("kto.undesirable_weight", "Bad weight", "loss weight of label-false answers", only=("kto",)),
    FieldSpec("grpo.rewards", "Rewards", "exact_answer, format, length (comma list)", "list", only=("grpo",)),
    FieldSpec("grpo.answer_field", "Answer field", "dataset field exact_answer compares", only=("grpo",)),
    FieldSpec("grpo.format_regex", "Format regex", "the whole answer must match (format)", only=("grpo",)),
    FieldSpec("grpo.length_target", "Length target", "characters for the full length reward", only=("grpo",)),
    FieldSpec("grpo.reward_file", "Reward file", "your Python file of reward functions", only=("grpo",)),
    FieldSpec("grpo.reward_functions", "Functions", "names in the reward file (comma list)", "list",
              only=("grpo",)),
    FieldSpec("grpo.reward_model", "Reward model", "a reward-model artifact: id or name", only=("grpo",)),
    FieldSpec("grpo.num_generations", "Generations", "answers per prompt; divides batch x accum",
              only=("grpo",)),
    FieldSpec("grpo.max_completion_length", "Answer length", "longest sampled answer, tokens", only=("grpo",)),
    FieldSpec("grpo.temperature", "Temperature", "sampling temperature; 1.0 is usual", only=("grpo",)),
    FieldSpec("grpo.beta", "KL beta", "KL penalty; 0 = no reference, no kl", only=("grpo",)),
    FieldSpec("training.eval_steps", "Eval steps", "evaluate every N steps; 0 = never"),
    FieldSpec("training.save_steps", "Save steps", "checkpoint every N steps (>= 1)"),
    FieldSpec("training.logging_steps", "Logging steps", "log loss every N steps (>= 1)"),
    FieldSpec("training.seed", "Seed", "0..4294967295"),
    FieldSpec("training.gradient_checkpointing", "Grad checkpoint", "less memory, ~30% slower", "bool"),
    FieldSpec("training.precision", "Precision", "auto = bf16/fp16 on a GPU, fp32 on CPU", "choice", PRECISIONS),
    FieldSpec("devices", "GPUs", "indices, e.g. 0,1; empty = automatic"),
    FieldSpec("strategy", "Multi-GPU", "ddp, or fsdp/deepspeed to shard big models", "choice", STRATEGIES),
    FieldSpec("offload", "Offload", "to CPU memory (fsdp, deepspeed)", "choice", OFFLOADS),
]
SPECS = {spec.path: spec for spec in FIELDS}
LR_HINTS = {"dpo": "5e-7..5e-6 for DPO", "kto": "5e-7..5e-6 for KTO", "orpo": "1e-6..1e-4 for ORPO",
            "grpo": "1e-6..5e-5 for GRPO", "full": "5e-6..1e-4 for full fine-tuning",
            "lora": "1e-5..3e-4 for LoRA/QLoRA"}
TOP_FIELDS = ("name", "model", "dataset", "objective", "method")


@dataclass
class Prepared:
    """What the form needs from the store and the schema, read in a worker."""

    base: dict[str, Any]  # the full config the fields start from
    preset: str | None  # the preset it came from (None for a copy of a run)
    datasets: list[Any]
    models: list[Any]
    descriptions: dict[str, str] = field(default_factory=dict)
    titles: dict[str, str] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)  # dataset name -> its lint verdict (ok/warn/fail)

    def default_dataset(self) -> str:
        """The newest dataset whose lint did not fail ("" when every one failed: the user picks one)."""
        return next((d.name for d in self.datasets if self.verdicts.get(d.name) != "fail"), "")


def dataset_verdicts(conn: Any, project_id: int) -> dict[str, str]:
    """Each dataset's lint verdict in project `project_id`, by name."""
    rows = conn.execute("SELECT name, lint FROM datasets WHERE project_id = ?", (project_id,)).fetchall()
    return {name: str(json_dict(lint).get("verdict") or "") for name, lint in rows}


@dataclass
class Checked:
    """The form read and validated: the config (None when invalid), its problems and warnings."""

    data: dict[str, Any]
    config: Any = None  # a RunConfig
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def field_node(data: dict[str, Any], path: str, create: bool = False) -> tuple[dict[str, Any], str]:
    """The mapping that holds a field's value and the field's key: ("training.seed" -> data["training"], "seed";
    "devices" -> data, "devices")."""
    section, _, leaf = path.rpartition(".")
    if not section:
        return data, leaf
    if create:
        return data.setdefault(section, {}), leaf
    return data.get(section) or {}, leaf


def prepare(store: Store, project: str, initial: dict[str, Any] | None) -> Prepared:
    """The project's datasets and models, the schema's descriptions and the starting config."""
    from core.run_config import field_descriptions, preset_config, preset_titles, validate

    with store.raw() as conn:
        choices = run_choices(conn, project)
        verdicts = dataset_verdicts(conn, choices.project_id)
    if initial is not None:
        valid, _ = validate(initial)
        base = valid.model_dump(mode="python") if valid is not None else dict(initial)
        preset = None
    else:
        model = ""
        if project == DEMO_PROJECT:
            model = next((m.path for m in choices.models if m.name == DEMO_MODEL), "")
        # never the newest dataset by default when its lint failed: the newest that did not
        dataset = Prepared({}, None, choices.datasets, [], verdicts=verdicts).default_dataset()
        preset = "smoke" if project == DEMO_PROJECT else "lora"
        base = preset_config(preset, model=model, dataset=dataset).model_dump(mode="python")
    return Prepared(base, preset, choices.datasets, choices.models, field_descriptions(), preset_titles(), verdicts)


def preset_base(preset: str, model: str, dataset: str, name: str) -> dict[str, Any]:
    """The full config of a preset for this model, dataset and name."""
    from core.run_config import preset_config

    return preset_config(preset, model=model, dataset=dataset, name=name).model_dump(mode="python")


def read_scalar(text: str) -> Any:
    """A typed value read as YAML does (2e-4 and 0.0002 are numbers; abc stays text for the schema to refuse)."""
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, int | float | str | bool) else text


def check(data: dict[str, Any]) -> Checked:
    """Validate form data: the config, or its problems (one line each); recipe warnings when valid."""
    from core.run_config import run_warnings, validate

    checked = Checked(data)
    checked.config, problems = validate(data, source="form")
    if checked.config is None:
        checked.problems = [p.removeprefix("form: ") for p in problems]
        return checked
    checked.warnings = run_warnings(checked.config)
    return checked


def config_yaml(config: Any) -> str:
    """The config as the YAML the run will save (the form's ctrl+y view)."""
    from core.run_config import config_yaml as dump_yaml

    return dump_yaml(config)


def queue(store: Store, project: str, data: dict[str, Any]) -> int:
    """Validate again and queue the run (the engine checks the model, the dataset and their fit)."""
    from core.run_config import parse_config
    from core.runs import queue_run

    return queue_run(store, project, parse_config(data, source="form"))


def gpu_estimate(store: Store, data: dict[str, Any]) -> str:
    """One line: the GPU memory the run would need, and whether it fits (core.estimate, as `tunedeck estimate`)."""
    from core.estimate import form_estimate

    return form_estimate(store, data)


def show_value(value: Any) -> str:
    """A config value as the form's text fields show it (2e-4 as 0.0002's shortest form, GPUs as 0,1)."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):  # GPU indices as in CUDA_VISIBLE_DEVICES
        return ",".join(str(v) for v in value)
    return str(value)
