"""Run configuration: schema, YAML round trips, error messages, overrides, warnings, presets, precision."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from engine.train.config import (
    ConfigError,
    RunConfig,
    apply_overrides,
    default_config,
    dump_yaml,
    field_paths,
    load_config,
    merge,
    parse_config,
    require_complete,
    resolve_compute_dtype,
    resolve_precision,
    template_yaml,
    warnings,
)
from engine.train.presets import PRESETS, preset_config, preset_name
from store.errors import TunedeckError


def _error(data: object, source: str = "run.yaml") -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data, source)
    return str(info.value)


def _load_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return str(info.value)


# --- round trips ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_round_trips_through_yaml(name: str) -> None:
    cfg = preset_config(name, "HuggingFaceTB/SmolLM2-135M-Instruct", "chats")
    assert parse_config(yaml.safe_load(dump_yaml(cfg))) == cfg
    assert parse_config(yaml.safe_load(template_yaml(cfg))) == cfg


def test_round_trip_keeps_lists_and_small_floats(tmp_path: Path) -> None:
    cfg = merge(default_config(), {"lr": 1e-5, "lora.target_modules": ["q_proj", "v_proj"], "devices": [0, 2],
                                   "name": "run: 1 # not a comment", "model": "/models/my model"})
    path = tmp_path / "run.yaml"
    path.write_text(dump_yaml(cfg))
    assert load_config(path) == cfg
    assert "#" not in dump_yaml(default_config())


def test_template_parses_to_the_default_and_documents_every_field(tmp_path: Path) -> None:
    text = template_yaml()
    path = tmp_path / "run.yaml"
    path.write_text(text)
    assert load_config(path) == default_config() == RunConfig()
    lines = text.splitlines()
    for dotted in field_paths():
        leaf = dotted.rsplit(".", 1)[-1]
        at = next(i for i, line in enumerate(lines) if line.strip().startswith(f"{leaf}:"))
        assert lines[at - 1].strip().startswith("#"), f"{dotted} has no comment above it"
    assert "8..64" in text and "1e-5..3e-4" in text and "0.03..0.1" in text


def test_default_config_is_the_lora_recipe_and_needs_model_and_dataset() -> None:
    cfg = default_config()
    assert cfg == preset_config("lora")
    assert (cfg.objective, cfg.method, cfg.lora.r, cfg.lora.alpha, cfg.training.learning_rate) == ("sft", "lora", 16,
                                                                                                   32, 2e-4)
    assert cfg.training.assistant_only_loss is True and cfg.devices == [] and cfg.strategy == "ddp"
    with pytest.raises(ConfigError) as info:
        require_complete(cfg, "run.yaml")
    assert "run.yaml: model: required" in str(info.value) and "run.yaml: dataset: required" in str(info.value)
    require_complete(merge(cfg, {"model": "m", "dataset": "d"}))


# --- invalid values: one readable line per problem, naming the dotted field ----------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"lora": {"r": "sixteen"}}, "run.yaml: lora.r: must be a whole number (got 'sixteen')"),
        ({"lora": {"r": True}}, "run.yaml: lora.r: must be a number (got true)"),
        ({"training": {"learning_rate": -1}}, "run.yaml: training.learning_rate: must be greater than 0 (got -1)"),
        ({"training": {"learning_rate": 1.5}}, "run.yaml: training.learning_rate: must be less than 1 (got 1.5)"),
        ({"training": {"per_device_batch": 0}}, "run.yaml: training.per_device_batch: must be at least 1 (got 0)"),
        ({"lora": {"dropout": 1.5}}, "run.yaml: lora.dropout: must be less than 1 (got 1.5)"),
        ({"objective": "rlhf"}, "run.yaml: objective: must be one of sft, dpo, kto, orpo, reward, grpo (got 'rlhf')"),
        ({"objective": "ppo"}, "run.yaml: objective: ppo is not available: TRL 1.16 ships no PPO trainer; for RLHF "
                               "with a reward model use objective grpo with grpo.reward_model"),
        ({"method": "qlra"}, "run.yaml: method: must be one of lora, qlora, full (got 'qlra'); did you mean 'qlora'?"),
        ({"lora": {"target_modules": 5}}, "run.yaml: lora.target_modules: must be 'all-linear' or a non-empty list"),
        ({"lora": {"target_modules": [1, 2]}}, "run.yaml: lora.target_modules: must be 'all-linear' or a list"),
        ({"lora": {"target_modules": "all_linear"}}, "run.yaml: lora.target_modules: must be 'all-linear'"),
        ({"trainig": {"epochs": 1}}, "run.yaml: trainig: unknown field 'trainig' (did you mean 'training'?)"),
        ({"training": {"lernig_rate": 1}}, "run.yaml: training.lernig_rate: unknown field 'lernig_rate' (did you mean "
                                           "'learning_rate'?)"),
        ({"learning_rate": 1e-4}, "unknown field 'learning_rate' (did you mean 'training.learning_rate'?)"),
        ({"lr": 1e-4}, "unknown field 'lr' (did you mean 'training.learning_rate'?)"),
        ({"training": {"beta": 0.1}}, "run.yaml: training.beta: unknown field 'beta' (did you mean 'dpo.beta'?)"),
        ({"training": {"epochs": "1e9"}}, "run.yaml: training.epochs: must be at most 1000 (got 1e9)"),
        ({"training": {"epochs": float("nan")}}, "run.yaml: training.epochs: must be a finite number"),
        ({"training": {"max_length": 10**7}}, "run.yaml: training.max_length: must be at most 1000000"),
        ({"training": {"max_steps": 0}}, "run.yaml: training.max_steps: must be -1"),
        ({"training": {"packing": "maybe"}}, "run.yaml: training.packing: must be true or false (got 'maybe')"),
        ({"lora": 5}, "run.yaml: lora: must be a mapping of fields"),
        ({"devices": [0, 0]}, "run.yaml: devices: lists the same GPU more than once"),
        ({"devices": [-1]}, "run.yaml: devices[0]: must be at least 0 (got -1)"),
        ({"strategy": "zero3"}, "run.yaml: strategy: must be one of ddp, fsdp, deepspeed_zero2, deepspeed_zero3"),
        ({"quant": {"quant_type": "int4"}}, "run.yaml: quant.quant_type: must be one of nf4, fp4 (got 'int4')"),
        ({"model": ["a"]}, "run.yaml: model: must be text"),
    ],
)
def test_invalid_values_name_the_field(data: dict, expected: str) -> None:
    message = _error(data)
    assert expected in message
    assert "pydantic" not in message and "Traceback" not in message and "Input should" not in message


def test_every_problem_is_listed_on_its_own_line() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"training": {"learning_rate": -1, "per_device_batch": 0}, "lora": {"r": 0}}, "run.yaml")
    assert isinstance(info.value, TunedeckError)
    assert info.value.problems == [
        "run.yaml: lora.r: must be at least 1 (got 0)",
        "run.yaml: training.per_device_batch: must be at least 1 (got 0)",
        "run.yaml: training.learning_rate: must be greater than 0 (got -1)",
    ]
    assert str(info.value) == "\n".join(info.value.problems)


def test_yaml_syntax_error_reports_line_and_column(tmp_path: Path) -> None:
    message = _load_error(tmp_path, "model: x\ntraining:\n  epochs: 1\n   seed: 3\n")
    assert message.startswith(f"{tmp_path / 'run.yaml'}:4:")
    assert "invalid YAML" in message


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    message = _load_error(tmp_path, "training:\n  seed: 1\n  seed: 2\n")
    assert message == f"{tmp_path / 'run.yaml'}:3:3: invalid YAML: duplicate key 'seed' (first given on line 2)"


@pytest.mark.parametrize("text", ["", "# only a comment\n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    assert "the configuration is empty" in _load_error(tmp_path, text)


def test_top_level_list_and_scalar(tmp_path: Path) -> None:
    assert "expected a mapping of fields" in _load_error(tmp_path, "- model: x\n- dataset: y\n")
    assert "got a list" in _load_error(tmp_path, "- model: x\n")
    assert "expected a mapping of fields" in _load_error(tmp_path, "42\n")


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)


def test_lenient_but_unambiguous_forms(tmp_path: Path) -> None:
    # YAML 1.1 reads 2e-4 as a string; empty sections mean defaults; "q,v" and "0,1" are lists; dataset ids are ints.
    text = "model: m\ndataset: 3\nlora:\n  target_modules: q_proj, v_proj\ntraining:\n  learning_rate: 2e-4\n" \
           "quant:\ndevices: 0,1\n"
    path = tmp_path / "run.yaml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.training.learning_rate == 2e-4 and cfg.dataset == "3" and cfg.devices == [0, 1]
    assert cfg.lora.target_modules == ["q_proj", "v_proj"] and cfg.quant == default_config().quant


# --- overrides -----------------------------------------------------------------------------------------------


def test_overrides_parse_types_and_aliases() -> None:
    cfg = apply_overrides(
        default_config(),
        ["training.learning_rate=1e-4", "lora.r=32", "lora.target_modules=q_proj,v_proj", "method=qlora",
         "epochs=2", "batch=8", "grad_accum=2", "max_length=512", "beta=0.2", "alpha=64", "max_steps=100",
         "training.packing=true", "model=1234", "dataset=chats", "devices=0,1", "strategy=fsdp", "seed=7"],
    )
    t = cfg.training
    assert (t.learning_rate, t.epochs, t.per_device_batch, t.grad_accum, t.max_length, t.max_steps) == (
        1e-4, 2.0, 8, 2, 512, 100)
    assert t.packing is True and t.seed == 7
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.target_modules) == (32, 64, ["q_proj", "v_proj"])
    assert (cfg.method, cfg.model, cfg.dataset, cfg.devices, cfg.strategy, cfg.dpo.beta) == (
        "qlora", "1234", "chats", [0, 1], "fsdp", 0.2)
    assert apply_overrides(cfg, ["lr=3e-4"]).training.learning_rate == 3e-4
    assert apply_overrides(cfg, ["lora.target_modules=[k_proj]"]).lora.target_modules == ["k_proj"]
    assert apply_overrides(cfg, ["lora.target_modules=all-linear"]).lora.target_modules == "all-linear"


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("trainig.learning_rate=1", "--set: trainig: unknown field 'trainig' (did you mean 'training'?)"),
        ("training.lernig_rate=1", "--set: training.lernig_rate: unknown field 'lernig_rate'"),
        ("foo=1", "--set: foo: unknown field 'foo'"),
        ("lr=-1", "--set: training.learning_rate: must be greater than 0 (got -1)"),
        ("r=sixteen", "--set: lora.r: must be a whole number (got 'sixteen')"),
        ("epochs=", "--set: training.epochs: must be a number (got nothing)"),
        ("model.x=1", "--set: model.x: 'model' has no sub-fields"),
        ("lr", "expected FIELD=VALUE"),
    ],
)
def test_override_errors_name_the_field(item: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        apply_overrides(default_config(), [item])
    assert expected in str(info.value)


# --- warnings ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lora", "qlora", "full", "dpo", "orpo", "kto", "reward", "grpo"])
def test_recipe_presets_have_no_warnings(name: str) -> None:
    assert warnings(preset_config(name, "m", "d")) == []


@pytest.mark.parametrize(
    ("updates", "expected"),
    [
        ({"lr": 1e-3}, "training.learning_rate: 0.001 is outside the recommended range 1e-05..0.0003"),
        ({"lr": 1e-6}, "training.learning_rate: 1e-06 is outside the recommended range"),
        ({"r": 4, "alpha": 8}, "lora.r: 4 is outside the recommended range 8..64"),
        ({"r": 128, "alpha": 256}, "lora.r: 128 is outside the recommended range 8..64"),
        ({"alpha": 8}, "lora.alpha: 8 is outside the recommended range r..4r (16..64"),
        ({"epochs": 10}, "training.epochs: 10 is outside the recommended range 1..5"),
        ({"epochs": 0.5}, "training.epochs: 0.5 is outside the recommended range 1..5"),
        ({"batch": 1, "grad_accum": 1}, "effective batch 1 (1 x 1 x 1 device) is outside the recommended range 8..64"),
        ({"batch": 16, "grad_accum": 2, "devices": [0, 1, 2]}, "effective batch 96 (16 x 2 x 3 devices)"),
        ({"warmup": 0.0}, "training.warmup: 0 is outside the recommended range 0.03..0.1"),
        ({"warmup": 0.5}, "training.warmup: 0.5 is outside the recommended range 0.03..0.1"),
    ],
)
def test_warnings_name_field_and_range(updates: dict, expected: str) -> None:
    found = warnings(merge(default_config(), updates))
    assert any(expected in w for w in found), found


def test_warning_rules_depend_on_objective_method_and_max_steps() -> None:
    dpo = preset_config("dpo", "m", "d")
    assert any("for DPO" in w for w in warnings(merge(dpo, {"lr": 2e-4})))
    assert warnings(merge(dpo, {"lr": 5e-7})) == []
    full = preset_config("full", "m", "d")
    assert not any(w.startswith("lora.") for w in warnings(merge(full, {"r": 2})))
    assert any("for full fine-tuning" in w for w in warnings(merge(full, {"lr": 3e-4})))
    assert not any("epochs" in w for w in warnings(merge(default_config(), {"epochs": 50, "max_steps": 200})))
    assert len(warnings(preset_config("smoke"))) == 2  # tiny batch, no warmup: expected for a smoke test


# --- presets -------------------------------------------------------------------------------------------------


def test_presets_hold_the_documented_recipes() -> None:
    smoke = preset_config("smoke", "m", "d")
    assert smoke.training.max_steps == 8 and smoke.training.logging_steps == 1 and smoke.training.save_steps == 4
    lora = preset_config("LoRA default", "m", "d")
    assert (lora.lora.r, lora.lora.alpha, lora.training.learning_rate, lora.training.scheduler,
            lora.training.epochs) == (16, 32, 2e-4, "cosine", 3.0)
    qlora = preset_config("qlora", "m", "d")
    assert (qlora.method, qlora.quant.quant_type, qlora.quant.double_quant) == ("qlora", "nf4", True)
    assert preset_config("full", "m", "d").method == "full"
    dpo = preset_config("dpo", "m", "d")
    assert (dpo.objective, dpo.training.learning_rate, dpo.dpo.beta) == ("dpo", 5e-6, 0.1)
    assert preset_name("smoke test") == "smoke"


def test_preset_overrides_and_unknown_preset() -> None:
    cfg = preset_config("lora", "m", "d", lr=1e-4, training={"seed": 3}, name="first")
    assert (cfg.training.learning_rate, cfg.training.seed, cfg.training.epochs, cfg.name) == (1e-4, 3, 3.0, "first")
    with pytest.raises(ConfigError, match=r"preset lora: training.learning_rate: must be greater than 0"):
        preset_config("lora", "m", "d", lr=0)
    with pytest.raises(ConfigError) as info:
        preset_config("qlroa", "m", "d")
    assert str(info.value) == ("unknown preset 'qlroa'; choose one of: smoke, lora, qlora, full, dpo, orpo, kto, "
                               "reward, grpo (did you mean 'qlora'?)")


# --- precision -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("precision", "cuda", "bf16", "expected"),
    [
        ("auto", False, False, "fp32"),
        ("auto", True, True, "bf16"),
        ("auto", True, False, "fp16"),
        ("fp32", True, True, "fp32"),
        ("bf16", True, True, "bf16"),
        ("bf16", False, False, "bf16"),
        ("fp16", True, False, "fp16"),
        ("fp16", False, False, ConfigError),
        ("bf16", True, False, ConfigError),
    ],
)
def test_precision_resolution(precision: str, cuda: bool, bf16: bool, expected: object) -> None:
    cfg = merge(default_config(), {"training.precision": precision, "quant.compute_dtype": precision})
    if expected is ConfigError:
        with pytest.raises(ConfigError, match=r"training\.precision"):
            resolve_precision(cfg, cuda, bf16)
        with pytest.raises(ConfigError, match=r"quant\.compute_dtype"):
            resolve_compute_dtype(cfg, cuda, bf16)
    else:
        assert resolve_precision(cfg, cuda, bf16) == expected
        assert resolve_compute_dtype(cfg, cuda, bf16) == expected


def test_config_modules_import_nothing_heavy() -> None:
    root = Path(__file__).resolve().parents[1] / "engine" / "train"
    modules = [*sorted((root / "config").glob("*.py")), root / "presets.py"]
    assert len(modules) >= 7  # the config package's modules and the presets
    for path in modules:
        tree = ast.parse(path.read_text())
        top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
        top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
        assert not top & {"torch", "transformers", "trl", "peft", "bitsandbytes", "datasets", "accelerate"}


def test_cpu_allocator_failure_counts_as_out_of_memory() -> None:
    """The CPU allocator's failure says neither "out of memory" nor raises MemoryError; it must still get
    the out-of-memory message with its suggestions, not a generic failure."""
    import torch

    from engine.train.trainer import _oom_message, is_oom

    with pytest.raises(RuntimeError) as real:
        torch.empty(2**50, dtype=torch.uint8)  # 1 PiB: refused by the allocator at once
    assert is_oom(real.value)
    assert is_oom(MemoryError()) and is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory."))
    assert not is_oom(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    message = _oom_message(7, real.value)
    assert message.startswith("out of memory at step 7") and "gradient_checkpointing: true" in message


# --- objectives beyond SFT ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"objective": "kto", "training": {"per_device_batch": 1}},
         "run.yaml: training.per_device_batch: KTO needs at least 2"),
        ({"objective": "reward", "method": "qlora"}, "run.yaml: method: a reward model trains with lora or full"),
        ({"objective": "grpo", "grpo": {"rewards": []}}, "run.yaml: grpo.rewards: GRPO needs at least one reward"),
        ({"objective": "grpo", "grpo": {"rewards": ["format"]}},
         "run.yaml: grpo.format_regex: the format reward needs a regular expression"),
        ({"objective": "grpo", "grpo": {"reward_functions": ["f"]}},
         "run.yaml: grpo.reward_file: required by grpo.reward_functions"),
        ({"objective": "grpo", "grpo": {"reward_file": "r.py"}},
         "run.yaml: grpo.reward_functions: name the functions of grpo.reward_file to use"),
        ({"objective": "grpo", "training": {"per_device_batch": 3, "grad_accum": 1}},
         "run.yaml: grpo.num_generations: 4 must divide the batch of sampled answers, per_device_batch x grad_accum x "
         "processes = 3"),
        ({"grpo": {"format_regex": "(unclosed"}}, "run.yaml: grpo.format_regex: not a valid regular expression"),
        ({"grpo": {"reward_functions": ["not-a-name"]}}, "'not-a-name' is not a Python function name"),
        ({"grpo": {"rewards": ["lenght"]}}, "must be one of exact_answer, format, length (got 'lenght')"),
        ({"kto": {"beta": 0}}, "run.yaml: kto.beta: must be greater than 0"),
    ],
)
def test_objective_settings_that_do_not_fit_are_named(data: dict, expected: str) -> None:
    assert expected in _error(data)


def test_objective_lists_read_from_comma_text_and_ppo_is_explained() -> None:
    cfg = apply_overrides(preset_config("grpo", "m", "d"), ["grpo.rewards=length, format", "grpo.format_regex=a+",
                                                            "grpo.reward_file=r.py", "grpo.reward_functions=f,g"])
    assert (cfg.grpo.rewards, cfg.grpo.reward_functions) == (["length", "format"], ["f", "g"])
    assert parse_config(yaml.safe_load(dump_yaml(cfg))) == cfg
    assert "TRL 1.16 ships no PPO trainer" in _error({"objective": "ppo"})


def test_objective_warnings_use_their_own_ranges() -> None:
    assert any("for KTO" in w for w in warnings(preset_config("kto", "m", "d", lr=1e-4)))
    assert any("for GRPO" in w for w in warnings(preset_config("grpo", "m", "d", lr=1e-3)))
    assert any("orpo.beta: 2 is outside" in w for w in warnings(preset_config("orpo", "m", "d", orpo={"beta": 2})))
    assert any("training.packing: ignored for KTO" in w for w in warnings(
        preset_config("kto", "m", "d", training={"packing": True})))
    reward = preset_config("reward", "m", "d")
    assert (reward.objective, reward.method, warnings(reward)) == ("reward", "lora", [])
