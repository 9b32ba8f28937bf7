"""Merging: each formula on hand-made tensors, full-model and adapter merges through real jobs (one through the
CLI and the detached runner), and every refusal (clear message, exit code 1, no job, nothing written)."""

from __future__ import annotations

import json
import math
import shutil
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import run_cli

from engine.merge import methods

LINEAR_NAMES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CHECKED = ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight",
           "model.norm.weight")


def t(*values: float) -> Any:
    return torch.tensor(values, dtype=torch.float32)


# --- formulas -----------------------------------------------------------------------------------------------


def test_linear_is_the_weighted_average() -> None:
    a, b = t(1, 2, 3), t(3, 6, -1)
    assert torch.allclose(methods.linear([a, b]), t(2, 4, 1))
    assert torch.allclose(methods.linear([a, b], [3, 1]), (3 * a + b) / 4)
    assert torch.allclose(methods.linear([a.half(), b.bfloat16()], [1, 1]), t(2, 4, 1))  # any float dtype in
    with pytest.raises(ValueError, match="positive"):
        methods.linear([a, b], [1, 0])


def test_slerp_follows_the_great_circle() -> None:
    a, b = t(1, 0), t(0, 2)  # 90 degrees apart, different norms
    assert torch.allclose(methods.slerp(a, b, 0.0), a) and torch.allclose(methods.slerp(a, b, 1.0), b)
    mid = methods.slerp(a, b, 0.5)  # sin(45°)/sin(90°) of each
    assert torch.allclose(mid, t(math.sqrt(0.5), 2 * math.sqrt(0.5)), atol=1e-6)
    third = methods.slerp(a, b, 1 / 3)
    theta = math.pi / 2
    expected = a * math.sin(2 / 3 * theta) / math.sin(theta) + b * math.sin(theta / 3) / math.sin(theta)
    assert torch.allclose(third, expected, atol=1e-6)
    unit = methods.slerp(t(1, 0), t(0, 1), 0.3)  # unit vectors stay on the unit circle at angle 0.3·90°
    assert torch.allclose(unit, t(math.cos(0.3 * theta), math.sin(0.3 * theta)), atol=1e-6)
    m = methods.slerp(t(1, 0, 0), t(0, 0, 1), 0.5).reshape(3)  # works on any shape, flattened
    assert torch.allclose(m, t(math.sqrt(0.5), 0, math.sqrt(0.5)), atol=1e-6)


def test_slerp_falls_back_to_linear_when_collinear_or_zero() -> None:
    a = t(1, 2, 3)
    assert torch.allclose(methods.slerp(a, 2 * a, 0.25), 0.75 * a + 0.25 * 2 * a)  # parallel: cos = 1
    assert torch.allclose(methods.slerp(a, -a, 0.25), 0.75 * a - 0.25 * a)  # anti-parallel: cos = -1
    nearly = a + t(1e-4, 0, 0)
    assert torch.allclose(methods.slerp(a, nearly, 0.5), (a + nearly) / 2)
    assert torch.allclose(methods.slerp(torch.zeros(3), a, 0.5), a / 2)
    assert torch.allclose(methods.slerp(a.reshape(1, 3), (2 * a).reshape(1, 3), 0.5), 1.5 * a.reshape(1, 3))


def test_trim_keeps_the_largest_magnitudes() -> None:
    d = t(0.1, -5, 3, -0.2, 4, 0.0)
    assert torch.equal(methods.trim(d, 0.5), t(0, -5, 3, 0, 4, 0))  # 3 of 6 kept
    assert torch.equal(methods.trim(d, 1 / 3), t(0, -5, 0, 0, 4, 0))
    assert torch.equal(methods.trim(d, 1.0), d)
    assert torch.equal(methods.trim(d, 0.01), torch.zeros(6))


def test_ties_elects_the_sign_and_averages_the_agreeing_values() -> None:
    d1, d2, d3 = t(2, -1, 0.5, 3), t(1, 2, -0.5, -1), t(-1, 2, 0, -1)
    sign = methods.elect_sign([d1, d2, d3])  # sums: 2, 3, 0 (counts as +), 1
    assert torch.equal(sign, t(1, 1, 1, 1))
    mean = methods.disjoint_mean([d1, d2, d3], None, sign)
    assert torch.allclose(mean, t(1.5, 2, 0.5, 3))  # only values with the elected sign; zeros never count
    weighted = methods.elect_sign([d1, d2, d3], [1, 1, 5])  # sums: -2, 11, 0, -4
    assert torch.equal(weighted, t(-1, 1, 1, -1))
    assert torch.allclose(methods.disjoint_mean([d1, d2, d3], [1, 1, 5], weighted), t(-1, 2, 0.5, -1))
    # full TIES: density 0.5 keeps the 2 largest of 4 per task vector (values tied at the cut are all kept)
    merged = methods.ties([d1, d2, d3], density=0.5)
    trimmed = [methods.trim(d, 0.5) for d in (d1, d2, d3)]
    assert torch.equal(trimmed[0], t(2, 0, 0, 3))
    assert torch.equal(trimmed[1], t(1, 2, 0, -1))  # |1| and |-1| tie at the cut: both kept
    assert torch.equal(trimmed[2], t(-1, 2, 0, -1))
    # signs of sums: (2, 4, 0 -> +, 1): agreeing means: (2+1)/2, (2+2)/2, none -> 0, 3
    assert torch.allclose(merged, t(1.5, 2, 0, 3))


def test_ties_matches_peft_with_equal_weights() -> None:
    from peft.utils.merge_utils import ties as peft_ties

    gen = torch.Generator().manual_seed(0)
    deltas = [torch.randn(16, 8, generator=gen) for _ in range(3)]
    ours = methods.ties(deltas, [1, 1, 1], density=0.25)
    theirs = peft_ties(deltas, torch.ones(3), density=0.25, majority_sign_method="total")
    assert torch.allclose(ours, theirs, atol=1e-6)


def test_dare_drops_rescales_and_keeps_the_expectation() -> None:
    delta = torch.linspace(-1, 1, 1000)
    dropped = methods.dare_drop(delta, 0.3, torch.Generator().manual_seed(1))
    kept = dropped != 0
    assert 0.25 < kept.float().mean().item() < 0.35  # p = 0.7 dropped
    assert torch.allclose(dropped[kept], delta[kept] / 0.3)  # survivors scaled by 1/(1-p)
    again = methods.dare_drop(delta, 0.3, torch.Generator().manual_seed(1))
    assert torch.equal(dropped, again)  # the seed fixes the drop
    assert not torch.equal(dropped, methods.dare_drop(delta, 0.3, torch.Generator().manual_seed(2)))
    gen = torch.Generator().manual_seed(3)
    mean = torch.stack([methods.dare_drop(delta, 0.3, gen) for _ in range(4000)]).mean(0)
    assert torch.allclose(mean, delta, atol=0.1)  # unbiased: E[drop(d)] = d
    assert (mean - delta).abs().mean().item() < 0.02


def test_dare_linear_and_dare_ties_compose_drop_with_the_merge() -> None:
    d1, d2 = torch.randn(50, generator=torch.Generator().manual_seed(4)), torch.randn(50)
    g = methods.tensor_generator(7, "w")
    expected = methods.linear([methods.dare_drop(d1, 0.5, g), methods.dare_drop(d2, 0.5, g)], [2, 1])
    assert torch.allclose(methods.dare_linear([d1, d2], [2, 1], 0.5, methods.tensor_generator(7, "w")), expected)
    g = methods.tensor_generator(7, "w")
    dropped = [methods.dare_drop(d1, 0.5, g), methods.dare_drop(d2, 0.5, g)]
    expected = methods.disjoint_mean(dropped, None, methods.elect_sign(dropped))
    assert torch.allclose(methods.dare_ties([d1, d2], None, 0.5, methods.tensor_generator(7, "w")), expected)
    assert torch.allclose(methods.dare_linear([d1, d2], None, 1.0), (d1 + d2) / 2)  # density 1: plain linear
    a = methods.tensor_generator(7, "a").initial_seed()
    assert a != methods.tensor_generator(7, "b").initial_seed() != methods.tensor_generator(8, "a").initial_seed()


def test_merge_tensor_keeps_dtype_and_integer_buffers() -> None:
    base = torch.ones(4, dtype=torch.bfloat16)
    out = methods.merge_tensor("ties", base, [base * 2, base * 3], weights=[1, 1], density=1.0)
    assert out.dtype == torch.bfloat16 and torch.equal(out, base * 2.5)
    ints = torch.arange(4)
    assert torch.equal(methods.merge_tensor("linear", ints, [ints * 2, ints * 3]), ints)


# --- helpers ------------------------------------------------------------------------------------------------


def _inline(store: Any, job_id: int) -> Any:
    """Run a queued job here (the handler the runner would run), then return its row."""
    from engine.jobrun import execute_job
    from store.jobs import get_job

    previous = signal.getsignal(signal.SIGTERM)
    try:
        execute_job(store, job_id, 0)
    finally:
        signal.signal(signal.SIGTERM, previous)
    with store.read() as session:
        return get_job(session, job_id)


def _project(store: Any, name: str = "p") -> int:
    from store.projects import create_project

    with store.write() as session:
        return create_project(session, name).id


def _register(store: Any, project_id: int, kind: str, path: Path, **meta: Any) -> int:
    from engine.artifacts import register_artifact

    with store.write() as session:
        return register_artifact(session, project_id, kind, path, name=path.name, meta=meta).id


def _artifact(store: Any, artifact_id: int) -> Any:
    from store.models import Artifact

    with store.read() as session:
        return session.get(Artifact, artifact_id)


def _tensors(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    out: dict[str, Any] = {}
    for file in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(file)))
    return out


def _copy_non_weights(src: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy2(f, dest / f.name)


def _perturbed(base: Path, dest: Path, seed: int, scale: float = 0.02) -> Path:
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    tensors = {k: v + scale * torch.randn(v.shape, generator=gen) for k, v in _tensors(base).items()}
    _copy_non_weights(base, dest)
    save_file(tensors, str(dest / "model.safetensors"), metadata={"format": "pt"})
    return dest


def _logits(model: Any, tokenizer: Any) -> Any:
    messages = [{"role": "user", "content": "Reverse the order of these words.\n\nred fox jumps"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        return model(input_ids=ids["input_ids"]).logits


def _make_adapter(base: Path, dest: Path, seed: int, r: int = 4, targets: tuple[str, ...] = LINEAR_NAMES) -> Path:
    """A real peft LoRA adapter on `base` with random non-zero B (so it changes the model), saved like the
    trainer saves one (adapter + tokenizer)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=r, lora_alpha=2 * r, target_modules=list(targets),
                                                  task_type="CAUSAL_LM"))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(0.05 * torch.randn(param.shape, generator=gen))
    peft_model.save_pretrained(str(dest))
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(dest))
    return dest


@pytest.fixture(scope="module")
def models(demo_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo base, two perturbed copies, two LoRA adapters of it, and look-alikes that must be refused."""
    from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

    from engine.demo import MODEL_CONFIG

    root = tmp_path_factory.mktemp("merge-models")
    out = {"base": demo_model_dir, "a": _perturbed(demo_model_dir, root / "model-a", 1),
           "b": _perturbed(demo_model_dir, root / "model-b", 2),
           "lora1": _make_adapter(demo_model_dir, root / "lora1", 11),
           "lora2": _make_adapter(demo_model_dir, root / "lora2", 12, r=2, targets=("q_proj", "v_proj", "up_proj"))}
    vocab = json.loads((demo_model_dir / "config.json").read_text())["vocab_size"]
    variants = {
        "mistral": (MistralForCausalLM, MistralConfig(**MODEL_CONFIG, vocab_size=vocab)),
        "narrow": (LlamaForCausalLM, LlamaConfig(**{**MODEL_CONFIG, "hidden_size": 32, "intermediate_size": 64},
                                                 vocab_size=vocab)),
        "vocab600": (LlamaForCausalLM, LlamaConfig(**MODEL_CONFIG, vocab_size=600)),
    }
    for name, (cls, config) in variants.items():
        torch.manual_seed(0)
        cls(config).save_pretrained(str(root / name))
        for f in demo_model_dir.glob("tok*"):
            shutil.copy2(f, root / name / f.name)
    other = root / "othertok"  # same weights, a tokenizer with two pieces swapped
    shutil.copytree(demo_model_dir, other)
    tok = json.loads((other / "tokenizer.json").read_text())
    vocab_map = tok["model"]["vocab"]
    (x, ix), (y, iy) = list(vocab_map.items())[100:102]
    vocab_map[x], vocab_map[y] = iy, ix
    (other / "tokenizer.json").write_text(json.dumps(tok))
    (other / "tokenizer.model").unlink()
    out.update({name: root / name for name in (*variants, "othertok")})
    out["narrow-lora"] = _make_adapter(out["narrow"], root / "narrow-lora", 5)
    return out


# --- full models ---------------------------------------------------------------------------------------------


def _expected(method: str, name: str, base: Any, a: Any, b: Any) -> Any:
    """The formula written out independently of engine.merge.methods where it is deterministic."""
    if method == "linear":  # weights 3, 1
        return 0.75 * a + 0.25 * b
    if method == "slerp":  # t = 0.3
        cos = torch.dot(a.flatten(), b.flatten()).item() / (a.norm().item() * b.norm().item())
        if cos > 0.9995:  # nearly collinear (the norms' weights): linear interpolation
            return 0.7 * a + 0.3 * b
        theta = math.acos(cos)
        return (math.sin(0.7 * theta) * a + math.sin(0.3 * theta) * b) / math.sin(theta)
    if method == "ties":  # weights 1, 1, density 0.5: peft's TIES as the reference
        from peft.utils.merge_utils import ties as peft_ties

        return base + peft_ties([a - base, b - base], torch.ones(2), density=0.5, majority_sign_method="total")
    gen = methods.tensor_generator(5, name)
    if method == "dare_linear":
        return base + methods.dare_linear([a - base, b - base], [1, 1], 0.5, gen)
    return base + methods.dare_ties([a - base, b - base], [1, 1], 0.5, gen)


@pytest.mark.parametrize(("method", "weights", "density", "seed"), [
    ("linear", [3, 1], None, 0), ("slerp", [0.3], None, 0), ("ties", None, 0.5, 0),
    ("dare_linear", None, 0.5, 5), ("dare_ties", None, 0.5, 5),
])
def test_full_model_merge_follows_the_formula(store: Any, models: dict[str, Path], method: str,
                                              weights: list[float] | None, density: float | None, seed: int) -> None:
    from engine.merge.queue import queue_merge_models

    project = _project(store)
    base_id = _register(store, project, "model", models["base"])
    job_id = queue_merge_models(store, "p", str(base_id), [str(models["a"]), str(models["b"])], method, weights,
                                density, f"{method}-m", seed=seed, start=False)
    job = _inline(store, job_id)
    assert job.status == "completed", job.error
    artifact = _artifact(store, job.result["artifact_id"])
    assert artifact.kind == "merged" and artifact.parent_id == base_id and artifact.name == f"{method}-m"
    assert artifact.meta["method"] == method and [i["path"] for i in artifact.meta["inputs"]] == [
        str(models["a"]), str(models["b"])]
    assert job.result["peak_rss_mb"] > 0
    out = Path(artifact.path)
    merged, base, a, b = _tensors(out), _tensors(models["base"]), _tensors(models["a"]), _tensors(models["b"])
    assert set(merged) == set(base)
    for name in CHECKED:
        assert torch.allclose(merged[name], _expected(method, name, base[name], a[name], b[name]), atol=1e-6), name
    if method == "dare_linear":  # each element of the merged task vector is 0, da, db or da + db
        name = CHECKED[1]
        da, db, dm = a[name] - base[name], b[name] - base[name], merged[name] - base[name]
        options = torch.stack([torch.zeros_like(da), da, db, da + db])
        assert ((options - dm).abs().min(0).values < 1e-5).all()
        assert 0.2 < (dm == 0).float().mean().item() < 0.3  # both dropped: 1/4 of the elements
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "chat_template.jinja", "tokenizer.model", "tunedeck_merge.json"):
        assert (out / f).is_file(), f
    assert not (store.home / "jobs" / str(job_id) / ".output-tmp").exists()


def test_merged_full_model_loads_and_runs(store: Any, models: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.merge.queue import queue_merge_models

    _project(store)
    job = _inline(store, queue_merge_models(store, "p", str(models["base"]), [str(models["a"]), str(models["b"])],
                                            "ties", None, 0.3, None, start=False))
    out = Path(job.result["path"])
    logits = _logits(AutoModelForCausalLM.from_pretrained(str(out)), AutoTokenizer.from_pretrained(str(out)))
    assert torch.isfinite(logits).all()


def test_shards_when_the_model_exceeds_the_shard_size(tmp_path: Path, models: dict[str, Path]) -> None:
    from transformers import AutoModelForCausalLM

    from engine.merge.shards import ShardWriter

    tensors = _tensors(models["base"])
    dest = tmp_path / "sharded"
    _copy_non_weights(models["base"], dest)
    writer = ShardWriter(dest, max_bytes=60_000)
    for name, tensor in tensors.items():
        writer.add(name, tensor)
    files = writer.close()
    assert len(files) > 3 and files[-1] == "model.safetensors.index.json"
    assert {k: torch.equal(v, tensors[k]) for k, v in _tensors(dest).items()} == dict.fromkeys(tensors, True)
    AutoModelForCausalLM.from_pretrained(str(dest))  # transformers follows the index


def test_a_cancelled_merge_leaves_nothing_behind(store: Any, models: dict[str, Path]) -> None:
    from engine.jobctx import JobCancelled, JobContext
    from engine.merge.models import run_merge_models_job
    from engine.merge.queue import queue_merge_models
    from store.jobs import get_job

    _project(store)
    job_id = queue_merge_models(store, "p", str(models["base"]), [str(models["a"]), str(models["b"])], "linear",
                                None, None, None, start=False)
    with store.read() as session:
        config = get_job(session, job_id).config
    folder = store.home / "jobs" / str(job_id)
    folder.mkdir(parents=True)
    ctx = JobContext(store, job_id, config, folder)
    ctx.stop_event.set()  # what SIGTERM does
    with pytest.raises(JobCancelled):
        run_merge_models_job(ctx)
    assert list(folder.iterdir()) == []  # no temp folder, no output
    with sqlite3.connect(store.home / "tunedeck.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM artifacts").fetchone()[0] == 0


# --- adapters -------------------------------------------------------------------------------------------------


def test_merge_cli_folds_the_adapter_into_its_base(home: Path, store: Any, models: dict[str, Path]) -> None:
    """The real path: `tunedeck merge --wait` queues, the detached runner runs the job in a child process."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    project = _project(store)
    adapter_id = _register(store, project, "adapter", models["lora1"], base_model=str(models["base"]), method="lora")
    started = time.monotonic()
    result = run_cli("merge", str(adapter_id), "--wait", "--json", home=home, timeout=300)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stderr + result.stdout
    job = json.loads(result.stdout)
    assert job["status"] == "completed" and job["kind"] == "merge", job
    artifact = _artifact(store, job["result"]["artifact_id"])
    assert artifact.kind == "merged" and artifact.parent_id == adapter_id and artifact.job_id == job["id"]
    assert artifact.meta["base_model"] == str(models["base"]) and artifact.meta["dtype"] == "fp32"
    assert artifact.meta["adapter_artifact_id"] == adapter_id and artifact.meta["method"] == "lora"
    assert job["result"]["peak_rss_mb"] > 0
    out = Path(artifact.path)
    assert out == home / "jobs" / str(job["id"]) / "output"
    for f in ("model.safetensors", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "chat_template.jinja", "tokenizer.model"):
        assert (out / f).is_file(), f
    assert not list(out.glob("adapter_*"))

    tokenizer = AutoTokenizer.from_pretrained(str(out))
    base_tok = AutoTokenizer.from_pretrained(str(models["base"]))
    chat = [{"role": "user", "content": "hi"}]
    assert tokenizer.apply_chat_template(chat, tokenize=False) == base_tok.apply_chat_template(chat, tokenize=False)
    merged = AutoModelForCausalLM.from_pretrained(str(out))
    assert merged.generation_config.eos_token_id == AutoModelForCausalLM.from_pretrained(
        str(models["base"])).generation_config.eos_token_id
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(models["base"])),
                                          str(models["lora1"]))
    base_logits = _logits(AutoModelForCausalLM.from_pretrained(str(models["base"])), tokenizer)
    want, got = _logits(reference, tokenizer), _logits(merged, tokenizer)
    diff = (want - got).abs().max().item()
    print(f"merge via CLI: {seconds:.1f} s, max logit diff {diff:.2e}, adapter effect "
          f"{(want - base_logits).abs().max().item():.2e}, peak RSS {job['result']['peak_rss_mb']} MB")
    assert diff < 1e-4
    assert (want - base_logits).abs().max().item() > 1e-2  # the adapter does change the model


@pytest.mark.parametrize(("method", "dtype"), [("qlora", "fp32"), ("lora", "bf16")])
def test_merge_job_dtypes_and_qlora(store: Any, models: dict[str, Path], method: str, dtype: str) -> None:
    """A QLoRA adapter merges into the un-quantized fp32 base; --dtype bf16 saves bf16 weights."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.merge.queue import queue_merge

    project = _project(store)
    adapter_id = _register(store, project, "adapter", models["lora1"], base_model=str(models["base"]), method=method)
    job = _inline(store, queue_merge(store, str(adapter_id), dtype=dtype, start=False))
    assert job.status == "completed", job.error
    artifact = _artifact(store, job.result["artifact_id"])
    assert artifact.meta["method"] == method and artifact.meta["dtype"] == dtype
    out = Path(artifact.path)
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    want_dtype = torch.float32 if dtype == "fp32" else torch.bfloat16
    assert {v.dtype for v in _tensors(out).values()} == {want_dtype}
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(models["base"])),
                                          str(models["lora1"]))
    got = _logits(AutoModelForCausalLM.from_pretrained(str(out), dtype=torch.float32), tokenizer)
    want = _logits(reference, tokenizer)
    diff = (want - got).abs().max().item()
    scale = want.abs().max().item()
    print(f"{method} {dtype}: max logit diff {diff:.2e} (largest logit {scale:.2f})")
    # bf16 keeps 8 bits of mantissa (relative step 2^-8 ~ 0.4%); through the layers the logits move by a few times
    # that, relative to their size: an absolute bar fails whenever the logits are large
    assert diff < (1e-4 if dtype == "fp32" else 0.02 * scale)


@pytest.mark.parametrize("method", ["linear", "ties", "slerp", "dare_ties"])
def test_merging_adapters_equals_merging_their_merged_models(store: Any, models: dict[str, Path],
                                                             tmp_path: Path, method: str) -> None:
    """Adapters (peft's exact `cat` for linear, per-layer task vectors otherwise) give the same model as merging
    each adapter into the base first and merging those full models; different ranks and targets are fine."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from engine.merge.queue import queue_merge_models

    _project(store)
    full = []
    for name in ("lora1", "lora2"):
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(models["base"])),
                                          str(models[name])).merge_and_unload()
        model.save_pretrained(str(tmp_path / name))
        full.append(str(tmp_path / name))
    weights = [0.3] if method == "slerp" else [2.0, 1.0]
    density = 0.6 if method in ("ties", "dare_ties") else None

    def run(inputs: list[str]) -> dict[str, Any]:
        job = _inline(store, queue_merge_models(store, "p", str(models["base"]), inputs, method, weights, density,
                                                None, seed=3, start=False))
        assert job.status == "completed", job.error
        return _tensors(Path(job.result["path"]))

    from_adapters = run([str(models["lora1"]), str(models["lora2"])])
    from_models = run(full)
    assert set(from_adapters) == set(from_models)
    worst = max((from_adapters[k] - from_models[k]).abs().max().item() for k in from_models)
    assert worst < 1e-5, worst
    base = _tensors(models["base"])
    assert not torch.equal(from_adapters[CHECKED[1]], base[CHECKED[1]])


# --- refusals ------------------------------------------------------------------------------------------------


def _nothing_written(home: Path, artifacts_before: int) -> None:
    with sqlite3.connect(home / "tunedeck.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
        assert conn.execute("SELECT COUNT(*) FROM artifacts").fetchone()[0] == artifacts_before
    assert not (home / "jobs").exists() or not any((home / "jobs").iterdir())


@pytest.mark.parametrize(("other", "message"), [
    ("mistral", "different architectures (LlamaForCausalLM (llama) vs MistralForCausalLM (mistral))"),
    ("narrow", "different tensor shapes: model.embed_tokens.weight is [512, 64] in"),
    ("vocab600", "different vocabulary sizes (512 vs 600)"),
    ("othertok", "different tokenizers (tokenizer.json differ)"),
])
def test_merge_models_refuses_incompatible_models(home: Path, store: Any, models: dict[str, Path], other: str,
                                                  message: str) -> None:
    _project(store)
    result = run_cli("merge-models", "p", "--method", "linear", "--base", str(models["base"]), str(models["a"]),
                     str(models[other]), home=home)
    assert result.returncode == 1, result.stderr
    err = result.stderr.strip()
    assert err.startswith("error: cannot merge ") and message in err and "Traceback" not in err, err
    assert str(models["base"]) in err and str(models[other]) in err  # names both models
    _nothing_written(home, 0)


def test_merge_refuses_a_missing_base_a_wrong_kind_and_a_foreign_adapter(home: Path, store: Any,
                                                                         models: dict[str, Path]) -> None:
    project = _project(store)
    missing = _register(store, project, "adapter", models["lora1"], base_model=str(home / "gone" / "base"))
    model_id = _register(store, project, "model", models["base"])
    foreign = _register(store, project, "adapter", models["narrow-lora"], base_model=str(models["base"]))
    cases = [
        (missing, f"base model of artifact {missing} (lora1): {home / 'gone' / 'base'} is missing"),
        (model_id, f"artifact {model_id} is a model; expected adapter: `tunedeck merge` folds an adapter"),
        (foreign, "into its base " + str(models["base"]) + ": model.layers.0.mlp.down_proj is [64, 128] in the base "
                  "but the adapter maps 64 -> 32 features"),
        ("999", "no artifact 999"),
    ]
    for ref, message in cases:
        result = run_cli("merge", str(ref), "--wait", home=home)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr, (
            ref, result.stderr)
    _nothing_written(home, 3)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"method": "slerp"}, "slerp interpolates between exactly two inputs; got 3"),
    ({"method": "linear", "weights": [1, 2]}, "2 weights for 3 inputs"),
    ({"method": "linear", "weights": [1, -1, 1]}, "weights must be positive"),
    ({"method": "linear", "density": 0.5}, "density applies to ties, dare_ties, dare_linear, not linear"),
    ({"method": "ties", "density": 1.5}, "density must be in (0, 1]"),
    ({"method": "ties", "inputs": ["a", "lora1", "lora2"]}, "inputs mix adapters (" ),
    ({"method": "ties", "base": "lora1"}, "the base must be a full model;"),
    ({"method": "ties", "base": "a", "inputs": ["lora1", "lora2"]}, "the adapter was trained on"),
    ({"method": "ties", "inputs": ["a", "nowhere"]}, "nowhere: no such artifact (id or name) nor model folder"),
    ({"method": "median"}, "unknown merge method 'median'"),
])
def test_merge_models_refusals(store: Any, models: dict[str, Path], kwargs: dict[str, Any], message: str) -> None:
    from engine.merge.queue import queue_merge_models
    from store.errors import TunedeckError

    _project(store)
    names = kwargs.pop("inputs", ["a", "b", "a"])
    inputs = [str(models[n]) if n in models else n for n in names]
    base = str(models[kwargs.pop("base", "base")])
    args = {"weights": None, "density": None, **kwargs}
    with pytest.raises(TunedeckError) as info:
        queue_merge_models(store, "p", base, inputs, args["method"], args["weights"], args["density"], None,
                           start=False)
    assert message in str(info.value)
    _nothing_written(store.home, 0)
