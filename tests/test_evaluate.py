"""Evaluation for real: perplexity of HF models and GGUFs on the same tokens, forgetting, quant sweeps."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from conftest import copy_home, run_cli


@pytest.fixture(scope="module")
def evaluated_home(tmp_path_factory: pytest.TempPathFactory, llama_sdist: Path,
                   demo_home_src: Path) -> tuple[Path, dict[str, str]]:
    """A home with the demo project, its model converted to f16 and quantized to q8_0 and q4_k_m."""
    home = copy_home(demo_home_src, tmp_path_factory.mktemp("eval") / "home")
    env = {"TUNEDECK_LLAMA_SDIST": str(llama_sdist), "HF_HUB_OFFLINE": "1",
           "XDG_DATA_HOME": str(home.parent / "xdg")}
    proc = run_cli("convert", "1", "--quant", "q8_0,q4_k_m", "--wait", home=home, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert run_cli("job", "list", home=home, env=env).returncode == 0
    return home, env


def _artifacts(home: Path, env: dict[str, str]) -> list[dict]:
    return json.loads(run_cli("artifact", "list", "demo", "--json", home=home, env=env).stdout)


def _eval(home: Path, env: dict[str, str], *args: str) -> dict:
    proc = run_cli("eval", *args, "--wait", "--json", home=home, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)["result"]


def test_perplexity_matches_its_formula_and_the_gguf_agrees(demo_model_dir: Path, demo_gguf: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from engine.demo import make_demo_examples
    from engine.evaluate.perplexity import gguf_perplexity, hf_perplexity
    from engine.evaluate.texts import GENERAL_TEXT, row_sequences, text_sequences

    tok = AutoTokenizer.from_pretrained(str(demo_model_dir))
    rows = [{"messages": [{"role": "user", "content": r["instruction"] + "\n\n" + r["input"]},
                          {"role": "assistant", "content": r["output"]}]} for r in make_demo_examples(6, 3)]
    seqs = row_sequences(tok, rows) + text_sequences(tok, GENERAL_TEXT[:2])
    hf = hf_perplexity(demo_model_dir, seqs)
    model = AutoModelForCausalLM.from_pretrained(str(demo_model_dir), dtype=torch.float32).eval()
    nll = n = 0.0
    for ids, mask in seqs:
        labels = torch.tensor([[t if m else -100 for t, m in zip(ids, mask, strict=True)]])
        labels[0, 0] = -100
        with torch.no_grad():
            loss = model(torch.tensor([ids]), labels=labels).loss
        scored = sum(mask[1:])
        nll += float(loss) * scored
        n += scored
    assert hf["tokens"] == n
    assert hf["perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-4)
    gg = gguf_perplexity(demo_gguf, seqs)
    assert gg["tokens"] == n
    assert gg["perplexity"] == pytest.approx(hf["perplexity"], rel=0.01)  # f16 GGUF vs fp32 model


def test_dataset_eval_on_model_and_gguf(evaluated_home: tuple[Path, dict[str, str]]) -> None:
    home, env = evaluated_home
    hf = _eval(home, env, "1", "--dataset", "demo")
    f16 = next(a for a in _artifacts(home, env) if a["name"] == "demo-llama-f16.gguf")
    gg = _eval(home, env, str(f16["id"]), "--dataset", "demo", "--split", "val")
    assert hf["dataset"]["backend"] == "transformers" and gg["dataset"]["backend"] == "llama.cpp"
    assert hf["dataset"]["tokens"] == gg["dataset"]["tokens"] > 50
    assert gg["dataset"]["perplexity"] == pytest.approx(hf["dataset"]["perplexity"], rel=0.01)
    shown = json.loads(run_cli("artifact", "show", str(f16["id"]), "--json", home=home, env=env).stdout)
    assert shown["evals"][-1]["dataset"]["perplexity"] == gg["dataset"]["perplexity"]


def test_quant_sweep_and_offline_lm_eval(evaluated_home: tuple[Path, dict[str, str]]) -> None:
    home, env = evaluated_home
    f16 = next(a for a in _artifacts(home, env) if a["name"] == "demo-llama-f16.gguf")
    result = _eval(home, env, str(f16["id"]), "--sweep", "--tasks", "hellaswag,arc_easy")
    rows = {r["type"]: r for r in result["sweep"]}
    assert set(rows) == {"f16", "q8_0", "q4_k_m"}
    assert rows["f16"]["delta_to_f16"] == 0
    assert rows["q8_0"]["size"] < rows["f16"]["size"] and rows["q4_k_m"]["size"] < rows["q8_0"]["size"]
    assert abs(rows["q8_0"]["delta_to_f16"]) < 0.02
    assert all(r["tokens_per_s"] > 0 for r in rows.values())
    assert [t["status"] for t in result["lm_eval"]] == ["unavailable", "unavailable"]
    text = run_cli("eval", str(f16["id"]), "--sweep", "--wait", home=home, env=env, timeout=300).stdout
    assert "q4_k_m" in text and "perplexity" in text and "tok/s" in text


def test_forgetting_is_flagged_against_the_base(evaluated_home: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from engine.artifacts import register_artifact
    from store.db import open_store

    home, env = evaluated_home
    base = next(a for a in _artifacts(home, env) if a["name"] == "demo-llama")
    damaged = tmp_path / "damaged"
    shutil.copytree(base["path"], damaged)
    model = AutoModelForCausalLM.from_pretrained(str(damaged), dtype=torch.float32)
    with torch.no_grad():  # logits x3: the untrained demo model, already worse than uniform, grows surer and worse
        model.model.norm.weight.mul_(3.0)  # (random noise on its weights can as well make it less wrong)
    model.save_pretrained(str(damaged))
    store = open_store(home)
    with store.write() as session:
        artifact_id = register_artifact(session, base["project_id"], "merged", damaged, name="damaged",
                                        parent_id=base["id"]).id
    store.close()
    result = _eval(home, env, str(artifact_id), "--compare", "base")
    assert result["forgetting"]["degraded"] is True and result["forgetting"]["change"] > 0.05
    same = _eval(home, env, str(base["id"]), "--compare", str(base["id"]))
    assert same["forgetting"]["degraded"] is False and same["forgetting"]["change"] == 0


def test_eval_refusals(demo_home_src: Path, tmp_path: Path) -> None:
    """Refused before queueing; none of them needs the converted models, so a copy of the demo home will do."""
    home = copy_home(demo_home_src, tmp_path / "home")
    env = {"HF_HUB_OFFLINE": "1"}
    data = next(a for a in _artifacts(home, env) if a["kind"] == "data")
    before = len(json.loads(run_cli("job", "list", "--json", home=home, env=env).stdout))
    for args, message in [
        (("eval", "1"), "nothing to evaluate"),
        (("eval", str(data["id"]), "--dataset", "demo"), "expected adapter or gguf or merged or model"),
        (("eval", "1", "--dataset", "nope"), "nope"),
        (("eval", "1", "--compare", "base"), "no base model in its lineage"),
    ]:
        proc = run_cli(*args, home=home, env=env)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
    assert len(json.loads(run_cli("job", "list", "--json", home=home, env=env).stdout)) == before


@pytest.mark.slow
def test_eval_agrees_with_the_runs_own_eval_loss(tmp_path: Path, demo_model_dir: Path, llama_sdist: Path,
                                                 demo_home_src: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run on a plain model folder (no artifact): its final eval loss, `eval` of its adapter (base + adapter)
    and of its merged model give one perplexity on the val split; `--compare base` on the merged model's GGUF
    compares with that folder and names it."""
    home = tmp_path / "home"
    env = {"TUNEDECK_LLAMA_SDIST": str(llama_sdist), "HF_HUB_OFFLINE": "1"}
    plain = tmp_path / "plain-base"
    shutil.copytree(demo_model_dir, plain)
    copy_home(demo_home_src, home)
    proc = run_cli("run", "new", "demo", "--preset", "smoke", "--model", str(plain), "--set", "max_steps=12",
                   "--set", "lr=3e-3", "--wait", "--json", home=home, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads(proc.stdout)
    adapter = run["result"]["artifact_id"]
    run_ppl = math.exp(run["result"]["eval_loss"])
    proc = run_cli("merge", str(adapter), "--wait", "--json", home=home, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    merged = json.loads(proc.stdout)["result"]["artifact_id"]
    on_adapter = _eval(home, env, str(adapter), "--dataset", "demo")["dataset"]
    on_merged = _eval(home, env, str(merged), "--dataset", "demo")["dataset"]
    assert on_adapter["from_run"] == on_merged["from_run"] == run["id"]
    assert on_adapter["tokens"] == on_merged["tokens"] > 50
    assert on_adapter["perplexity"] == pytest.approx(run_ppl, rel=0.01)
    assert on_merged["perplexity"] == pytest.approx(run_ppl, rel=0.01)
    proc = run_cli("convert", str(merged), "--wait", "--json", home=home, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    gguf = json.loads(proc.stdout)["result"]["artifact_id"]
    compared = _eval(home, env, str(gguf), "--compare", "base")
    result = compared["forgetting"]
    assert result["base"] == str(plain.resolve()) and result["base_label"] == str(plain.resolve())
    from cli.artifact import print_eval  # what `eval --wait` prints without --json (not a second eval job)

    print_eval(compared)
    assert f"vs base {plain.resolve()}" in capsys.readouterr().out
