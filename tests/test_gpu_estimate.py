"""The memory estimator: parameter counts from config.json, the breakdown against published rules of thumb,
the search for settings that fit, and calibration on past runs in a real store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.gpu.calibrate import (
    CLAMP,
    correction_factors,
    factor_for,
    history,
    record_estimate,
    record_measured,
)
from engine.gpu.estimate import (
    GIB,
    HEADROOM,
    NF4_DQ_BYTES,
    EstimateError,
    Settings,
    estimate,
    total_bytes,
    with_changes,
)
from engine.gpu.fit import nearest_fits
from engine.gpu.layout import Layout, ModelConfigError, arithmetic_layout, model_layout, read_config
from store.db import Store
from store.errors import NotFound, Refused
from store.models import Job, Project

# Published shapes (no weights): hidden, layers, heads, kv heads, intermediate, vocab; and the known totals.
REFERENCE = {
    "Llama-2-7B": ((4096, 32, 32, 32, 11008, 32000), 6.74e9),
    "Llama-3-8B": ((4096, 32, 32, 8, 14336, 128256), 8.03e9),
    "Llama-2-13B": ((5120, 40, 40, 40, 13824, 32000), 13.0e9),
    "CodeLlama-34B": ((8192, 48, 64, 8, 22016, 32000), 33.7e9),
    "Llama-2-70B": ((8192, 80, 64, 8, 28672, 32000), 69.0e9),
}
# Rules of thumb (GiB) at batch 1, length 512, gradient checkpointing on, LoRA r16 on all linear layers.
# QLoRA: "7-8B in about 6-10 GB" (5.5 for "about"), 13B ~12 GB, 33-34B fits a 24 GB card, 70B 36-48 GB.
# Full fine-tuning with mixed-precision AdamW: 16-18 bytes/param, "7-8B needs 60+ GB" (about 120 GB in
# LLaMA-Factory's table), 13B ~240 GB, 30-34B ~600 GB, 70B ~1200 GB.
QLORA_GIB = {"Llama-2-7B": (5.5, 10), "Llama-3-8B": (5.5, 10), "Llama-2-13B": (8, 14), "CodeLlama-34B": (18, 26),
             "Llama-2-70B": (36, 48)}  # fmt: skip
FULL_GIB = {"Llama-2-7B": (60, 160), "Llama-3-8B": (60, 180), "Llama-2-13B": (200, 280),
            "CodeLlama-34B": (500, 650), "Llama-2-70B": (1000, 1300)}  # fmt: skip
RULE = {"batch": 1, "grad_accum": 16, "max_length": 512, "gradient_checkpointing": True, "rank": 16}


def write_config(folder: Path, **fields: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(fields))
    return folder


def reference_config(name: str) -> dict[str, Any]:
    (h, layers, heads, kv, inter, vocab), _ = REFERENCE[name]
    return {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "hidden_size": h,
            "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
            "intermediate_size": inter, "vocab_size": vocab, "tie_word_embeddings": False,
            "rms_norm_eps": 1e-5, "torch_dtype": "bfloat16"}  # fmt: skip


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Layout]:
    """The reference models' layouts, read from config.json files written here."""
    root = tmp_path_factory.mktemp("configs")
    out = {}
    for name in REFERENCE:
        folder = write_config(root / name, **reference_config(name))
        config, where = read_config(str(folder))
        assert where == str(folder / "config.json")
        out[name] = model_layout(config)
    return out


# ----------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("name", list(REFERENCE))
def test_parameter_counts_match_the_published_totals(layouts: dict[str, Layout], name: str) -> None:
    layout = layouts[name]
    assert layout.source == "arithmetic"
    assert layout.total_params == pytest.approx(REFERENCE[name][1], rel=0.01)


# Tiny configs of every family the arithmetic knows, including biases, tied heads and head_dim overrides.
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 512, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
FAMILY_CASES = [
    {"model_type": "llama", "num_key_value_heads": 4, "tie_word_embeddings": True},  # NOTES.md's tiny Llama
    {"model_type": "llama", "attention_bias": True, "mlp_bias": True, "head_dim": 32},
    {"model_type": "mistral"}, {"model_type": "qwen2"}, {"model_type": "qwen3"},
    {"model_type": "qwen3", "attention_bias": True, "tie_word_embeddings": True}, {"model_type": "gemma"},
    {"model_type": "gemma2"}, {"model_type": "phi3"}, {"model_type": "granite"},
]  # fmt: skip


def test_meta_device_count_agrees_with_the_arithmetic() -> None:
    """transformers builds each model on the meta device (no weights); its parameters are the arithmetic's."""
    from engine.gpu.layout import meta_layout

    for case in FAMILY_CASES:
        config = {**TINY, **case}
        arithmetic, meta = arithmetic_layout(config), meta_layout(config)
        assert meta.source == "meta"
        assert arithmetic.total_params == meta.total_params, case
        assert arithmetic.linear_params == meta.linear_params, case
        assert arithmetic.lora_params(8) == meta.lora_params(8), case
    # The 7B reference on the meta device too (no memory is allocated for its 6.7B parameters).
    big = meta_layout(reference_config("Llama-2-7B"))
    assert big.total_params == arithmetic_layout(reference_config("Llama-2-7B")).total_params == 6_738_415_616


def test_unknown_family_is_counted_on_the_meta_device() -> None:
    config = {**TINY, "model_type": "olmo2"}  # q/k norms over whole projections, which Llama lacks
    layout = model_layout(config)
    assert layout.source == "meta"
    assert layout.total_params == arithmetic_layout(config).total_params + 2 * (64 + 32)  # q_norm h, k_norm kv


def test_lora_count_matches_peft() -> None:
    """Rank-r adapters on all linear layers: the count peft gives a real tiny Llama."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = {**TINY, "model_type": "llama"}
    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in config.items() if k != "model_type"}))
    peft_model = get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable == arithmetic_layout(config).lora_params(8)


# ----------------------------------------------------------------------------- reading configs


def test_config_refusals(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no such model folder"):
        read_config(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFound, match=r"no config\.json"):
        read_config(str(tmp_path / "empty"))
    with pytest.raises(NotFound, match="Hugging Face cache"):
        read_config("nobody/no-such-model")  # HF_HUB_OFFLINE is set for every test
    bad = write_config(tmp_path / "bad")
    (bad / "config.json").write_text("{not json")
    with pytest.raises(Refused, match=r"config\.json: not valid JSON"):
        read_config(str(bad))
    gpt2 = {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257}
    with pytest.raises(ModelConfigError, match="lacks hidden_size, num_hidden_layers"):
        model_layout(gpt2)
    moe = {**TINY, "model_type": "mixtral", "num_local_experts": 8}
    with pytest.raises(ModelConfigError, match="mixture of experts"):
        model_layout(moe)
    with pytest.raises(ModelConfigError, match="hidden_size must be a positive integer"):
        arithmetic_layout({**TINY, "model_type": "llama", "hidden_size": "big"})


def test_nested_text_config_is_read(tmp_path: Path) -> None:
    folder = write_config(tmp_path / "vlm", model_type="llava", text_config={**TINY, "model_type": "llama"})
    config, _ = read_config(str(folder))
    assert config["hidden_size"] == 64 and model_layout(config).total_params > 0


# ----------------------------------------------------------------------------- the breakdown


@pytest.mark.parametrize("name", list(REFERENCE))
def test_qlora_agrees_with_the_rules_of_thumb(layouts: dict[str, Layout], name: str) -> None:
    result = estimate(layouts[name], Settings(method="qlora", **RULE))
    low, high = QLORA_GIB[name]
    assert low <= result.total_bytes / GIB <= high, f"{name}: {result.total_bytes / GIB:.1f} GiB"


@pytest.mark.parametrize("name", list(REFERENCE))
def test_full_fine_tuning_agrees_with_the_rules_of_thumb(layouts: dict[str, Layout], name: str) -> None:
    result = estimate(layouts[name], Settings(method="full", **RULE))
    low, high = FULL_GIB[name]
    assert low <= result.total_bytes / GIB <= high, f"{name}: {result.total_bytes / GIB:.1f} GiB"
    assert any("mixed precision" in note for note in result.notes)
    per_param = sum(i.bytes for i in result.items if i.key in ("weights", "master", "gradients", "optimizer"))
    assert per_param / layouts[name].total_params == 18  # bf16 + fp32 master, gradients, m and v


def test_pure_bf16_full_and_lora_figures(layouts: dict[str, Layout]) -> None:
    seven = layouts["Llama-2-7B"]
    pure = estimate(seven, Settings(method="full", full_precision="bf16", **RULE)).total_bytes / GIB
    assert 45 <= pure <= 65  # 8 bytes/param: LLaMA-Factory's "full, pure bf16: 7B 60 GB"
    lora = {n: estimate(layouts[n], Settings(method="lora", **RULE)).total_bytes / GIB for n in layouts}
    assert 12 <= lora["Llama-2-7B"] <= 20 and 120 <= lora["Llama-2-70B"] <= 170  # "LoRA 16-bit: 7B 16 GB, 70B 160 GB"


def test_breakdown_parts(layouts: dict[str, Layout]) -> None:
    seven = layouts["Llama-2-7B"]
    q = estimate(seven, Settings(method="qlora", **RULE))
    items = {i.key: i.bytes for i in q.items}
    assert set(items) == {"weights", "adapters", "gradients", "optimizer", "activations", "logits", "overhead"}
    assert q.raw_total_bytes == q.total_bytes == sum(items.values())
    assert q.trainable_params == seven.lora_params(16) == 39_976_960
    assert items["weights"] == int(seven.linear_params * NF4_DQ_BYTES) + seven.unquantized_params * 4
    by = q.weights_by_precision
    assert by["nf4"] < by["int8"] < by["bf16"] < by["fp32"] == seven.total_params * 4
    eight_bit = estimate(seven, Settings(method="qlora", optimizer="paged_adamw_8bit", **RULE))
    assert {i.key: i.bytes for i in eight_bit.items}["optimizer"] == items["optimizer"] // 4
    no_ckpt = estimate(seven, Settings(method="qlora", **{**RULE, "gradient_checkpointing": False}))
    assert {i.key: i.bytes for i in no_ckpt.items}["activations"] > 10 * items["activations"]
    dpo = estimate(seven, Settings(method="qlora", objective="dpo", **RULE))
    assert {i.key: i.bytes for i in dpo.items}["logits"] == 2 * items["logits"]


def test_logits_dominate_a_small_model() -> None:
    """SmolLM2-135M's shape: a 49k vocabulary over a 576-wide model."""
    small = arithmetic_layout({"model_type": "llama", "hidden_size": 576, "num_hidden_layers": 30,
                               "num_attention_heads": 9, "num_key_value_heads": 3, "intermediate_size": 1536,
                               "vocab_size": 49152, "tie_word_embeddings": True})  # fmt: skip
    assert small.total_params == pytest.approx(134.5e6, rel=0.01)
    result = estimate(small, Settings(method="lora", batch=8, max_length=2048))
    biggest = max(result.items, key=lambda i: i.bytes)
    assert biggest.key == "logits" and biggest.bytes == 8 * 2048 * 49152 * 4 * 3


def test_settings_are_checked(layouts: dict[str, Layout]) -> None:
    for bad in ({"method": "ia3"}, {"batch": 0}, {"optimizer": "sgd"}, {"max_length": -1}, {"rank": 1.5}):
        with pytest.raises(EstimateError):
            estimate(layouts["Llama-2-7B"], Settings(**bad))  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- verdict and search


def test_verdicts(layouts: dict[str, Layout]) -> None:
    seven = layouts["Llama-2-7B"]
    need = estimate(seven, Settings(method="qlora", **RULE)).total_bytes
    assert estimate(seven, Settings(method="qlora", **RULE)).verdict == "unknown"
    assert estimate(seven, Settings(method="qlora", **RULE), free_bytes=2 * need).verdict == "fits"
    assert estimate(seven, Settings(method="qlora", **RULE), free_bytes=int(need / 0.95)).verdict == "tight"
    too_big = estimate(seven, Settings(method="qlora", **RULE), free_bytes=need // 2)
    assert too_big.verdict == "too big"


def test_search_finds_the_nearest_settings_that_fit(layouts: dict[str, Layout]) -> None:
    eight = layouts["Llama-3-8B"]
    settings = Settings(method="qlora", batch=4, grad_accum=4, max_length=2048, gradient_checkpointing=False)
    free = 16 * GIB
    result = estimate(eight, settings, free_bytes=free)
    assert result.verdict == "too big" and result.suggestions
    assert [s.cost for s in result.suggestions] == sorted(s.cost for s in result.suggestions)
    for sug in result.suggestions:
        assert sug.total_bytes == total_bytes(eight, sug.settings) <= free * HEADROOM
        assert sug.changes
        if sug.settings.batch != settings.batch:  # a smaller micro-batch keeps the effective batch
            assert sug.settings.effective_batch >= settings.effective_batch
    first = result.suggestions[0]
    assert first.settings.gradient_checkpointing and first.settings.max_length == 2048  # cheap changes first
    # None of the suggestions is another one plus more changes.
    fields = ("batch", "max_length", "gradient_checkpointing", "optimizer", "method", "rank")
    as_sets = [{f for f in fields if getattr(s.settings, f) != getattr(settings, f)} for s in result.suggestions]
    assert all(not (a < b) for a in as_sets for b in as_sets)


def test_search_moves_full_fine_tuning_to_an_adapter_and_gives_up_when_nothing_fits(layouts: dict[str, Layout]
                                                                                     ) -> None:  # fmt: skip
    seven = layouts["Llama-2-7B"]
    full = estimate(seven, Settings(method="full", batch=1, max_length=512), free_bytes=80 * GIB)
    assert full.verdict == "too big"
    assert full.suggestions[0].settings.method in ("lora", "qlora")
    assert nearest_fits(layouts["Llama-2-70B"], Settings(method="qlora"), 8 * GIB) == []


def test_several_gpus_split_model_state_by_strategy(layouts: dict[str, Layout]) -> None:
    """Per-GPU memory: ddp replicates everything; ZeRO-2 splits gradients, optimizer and master weights; FSDP and
    ZeRO-3 split the weights too; offload moves state to CPU memory; activations and logits are never split."""
    seventy = layouts["Llama-2-70B"]
    base = Settings(method="full", batch=1, max_length=2048)

    def parts(**changes: Any) -> dict[str, int]:
        return {item.key: item.bytes for item in estimate(seventy, with_changes(base, **changes)).items}

    one, ddp = parts(), parts(gpus=8)
    zero2, fsdp, zero3 = parts(gpus=8, strategy="deepspeed_zero2"), parts(gpus=8, strategy="fsdp"), \
        parts(gpus=8, strategy="deepspeed_zero3")
    assert ddp == one
    assert zero2["weights"] == one["weights"] and zero2["optimizer"] == -(-one["optimizer"] // 8)
    assert zero2["gradients"] == -(-one["gradients"] // 8) and zero2["master"] == -(-one["master"] // 8)
    assert fsdp == zero3 and fsdp["weights"] == -(-one["weights"] // 8)
    for key in ("activations", "logits", "overhead"):
        assert zero3[key] == one[key]
    # Full fine-tuning of a 70B model: ~1.2 TB on one GPU; ZeRO-3 on 8 x 80 GB cards brings it to ~160 GB
    # per card, still too big; offloading the optimizer (and master weights) leaves ~20 GB per card.
    total = {name: sum(p.values()) / GIB for name, p in {"one": one, "zero3": zero3}.items()}
    assert total["one"] > 1000 and 130 < total["zero3"] < 200, total
    offload_opt = parts(gpus=8, strategy="deepspeed_zero3", offload="optimizer")
    assert offload_opt["optimizer"] == offload_opt["master"] == 0
    assert sum(offload_opt.values()) / GIB < 80
    offload_all = parts(gpus=8, strategy="fsdp", offload="all")
    assert offload_all["weights"] == one["weights"] // seventy.layers  # one layer as the working set
    with pytest.raises(EstimateError, match="strategy must be one of"):
        estimate(seventy, with_changes(base, strategy="zero9"))


def test_with_several_gpus_the_search_suggests_sharding(layouts: dict[str, Layout]) -> None:
    seventy = layouts["Llama-2-70B"]
    settings = Settings(method="full", batch=1, max_length=2048, gpus=8)
    result = estimate(seventy, settings, free_bytes=80 * GIB)
    assert result.verdict == "too big" and result.suggestions
    texts = [" ".join(s.changes) for s in result.suggestions]
    assert any("strategy ddp→" in t for t in texts), texts
    assert all(not (s.settings.method == "qlora" and s.settings.strategy != "ddp") for s in result.suggestions)
    single = estimate(seventy, with_changes(settings, gpus=1), free_bytes=80 * GIB)
    assert not any("strategy" in " ".join(s.changes) for s in single.suggestions)  # one GPU: nothing to split


# ----------------------------------------------------------------------------- calibration


def _job(store: Store, name: str) -> int:
    with store.write() as session:
        project = session.get(Project, 1)
        if project is None:
            project = Project(name="calib")
            session.add(project)
            session.flush()
        job = Job(project_id=project.id, kind="train", name=name, status="completed", result={"steps": 10})
        session.add(job)
        session.flush()
        return job.id


def _run(store: Store, layout: Layout, settings: Settings, ratio: float | None, name: str) -> int:
    job_id = _job(store, name)
    result = estimate(layout, settings, factor=factor_for(correction_factors(store), layout.model_type,
                                                          settings.method))  # fmt: skip
    record_estimate(store, job_id, result.to_dict())
    if ratio is not None:
        record_measured(store, job_id, result.raw_total_bytes / 1024**2 * ratio)
    return job_id


def test_calibration_learns_a_family_factor_from_past_runs(store: Store, layouts: dict[str, Layout]) -> None:
    seven = layouts["Llama-2-7B"]
    settings = Settings(method="qlora", **RULE)
    first = _run(store, seven, settings, 1.1, "a")
    _run(store, seven, settings, 1.3, "b")
    assert correction_factors(store) == {}  # two runs are not enough
    _run(store, seven, settings, None, "no peak yet")
    assert correction_factors(store) == {}
    _run(store, seven, settings, 1.2, "c")
    factors = correction_factors(store)
    factor = factor_for(factors, "llama", "qlora")
    assert factor is not None and factor.factor == pytest.approx(1.2) and factor.samples == 3
    assert factor_for(factors, "mistral", "qlora") is None

    calibrated = estimate(seven, settings, factor=factor)
    assert calibrated.total_bytes == int(calibrated.raw_total_bytes * 1.2)
    assert any("calibrated: x1.20 from 3 past qlora runs of llama" in note for note in calibrated.notes)
    assert calibrated.to_dict()["factor"]["factor"] == pytest.approx(1.2)

    # A run estimated with the factor applied is compared on its raw estimate: factors do not compound.
    _run(store, seven, settings, 1.2, "d")
    assert factor_for(correction_factors(store), "llama", "qlora").factor == pytest.approx(1.2)

    rows = {r.name: r for r in history(store)}
    assert set(rows) == {"a", "b", "c", "d", "no peak yet"}
    assert rows["a"].error_pct == pytest.approx(10, abs=0.01) and rows["no peak yet"].error_pct is None
    assert rows["d"].estimate_mb == pytest.approx(rows["d"].raw_estimate_mb * 1.2, rel=1e-3)
    assert rows["d"].error_pct == pytest.approx(0, abs=0.01)  # the calibrated estimate was right
    with store.raw() as conn:
        result = json.loads(conn.execute("SELECT result FROM jobs WHERE id = ?", (first,)).fetchone()[0])
    assert result["steps"] == 10 and result["gpu_estimate"]["model_type"] == "llama"  # merged, not replaced
    assert result["gpu_peak_mb"] > 0


def test_calibration_is_clamped_and_prefers_the_method(store: Store, layouts: dict[str, Layout]) -> None:
    seven = layouts["Llama-2-7B"]
    for i in range(3):
        _run(store, seven, Settings(method="full", **RULE), 0.45, f"full{i}")  # e.g. pure bf16 vs the 18 B/param
    full = factor_for(correction_factors(store), "llama", "full")
    assert full is not None and full.method == "full" and full.factor == CLAMP[0]
    _run(store, seven, Settings(method="lora", **RULE), 5.0, "lora0")
    factors = correction_factors(store)
    lora = factor_for(factors, "llama", "lora")  # too few lora runs: the family's factor over all methods
    assert lora is not None and lora.method is None and lora.samples == 4


def test_a_run_keeps_its_estimate_for_calibration(store, demo_model_dir) -> None:  # type: ignore[no-untyped-def]
    """What the trainer calls on a GPU at the start of a run: the estimate from the run config lands in the
    job's result beside where the measured peak goes (the GPU-only call sites run in device_check)."""
    from engine.gpu.calibrate import ESTIMATE_KEY, MEASURED_KEY, history, record_measured
    from engine.gpu.runrecord import record_run_estimate
    from engine.train.presets import preset_config
    from store.jobs import create_job, get_job
    from store.projects import create_project

    run = preset_config("lora").model_dump(mode="json")
    with store.write() as session:
        job_id = create_job(session, create_project(session, "p").id, "train", {"run": run}).id
    est = record_run_estimate(store, job_id, run, str(demo_model_dir))
    assert est is not None and est["total_bytes"] > 0
    record_measured(store, job_id, 123.0)
    with store.read() as session:
        result = get_job(session, job_id).result
    assert result[ESTIMATE_KEY]["total_mb"] > 0 and result[MEASURED_KEY] == 123.0
    assert any(row.job_id == job_id for row in history(store))
    assert record_run_estimate(store, job_id, run, "/no/such/model") is None
