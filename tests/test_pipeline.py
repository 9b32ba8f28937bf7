"""dataset -> run -> adapter -> merged model -> GGUF -> quants -> eval, for real on the CPU, in one lineage;
and the same round trip for a real pretrained model (SmolLM2-135M-Instruct, shipped as a GGUF)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import copy_home, run_cli

pytestmark = pytest.mark.slow


def _ok(*args: str, home: Path, timeout: float = 600) -> dict:
    proc = run_cli(*args, "--json", home=home, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _generate(path: Path, lora: Path | None = None) -> list[int]:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, n_threads_batch=1, verbose=False,
                          lora_path=str(lora) if lora else None)
    prompt = "<|im_start|>user\nReverse the order of these words.\n\nred blue<|im_end|>\n<|im_start|>assistant\n"
    tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    out = []
    for token in llm.generate(tokens, temp=0.0):
        if token == llm.token_eos() or len(out) >= 8:
            break
        out.append(token)
    return out


def _merged_logit_gap(base: str, adapter: str, merged: str) -> float:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(merged)
    ids = torch.tensor([tok.apply_chat_template([{"role": "user", "content": "Reverse: cat hat"}],
                                                tokenize=True, add_generation_prompt=True, return_dict=True)
                        ["input_ids"]])
    with torch.no_grad():
        ref = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                        adapter)(ids).logits
        got = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)(ids).logits
        plain = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)(ids).logits
    assert float((ref - plain).abs().max()) > 1e-2  # the adapter really changes the model
    return float((ref - got).abs().max())


def test_run_adapter_merge_convert_quantize_on_cpu(home: Path, gguf_tools_env: Path, demo_home_src: Path) -> None:
    copy_home(demo_home_src, home)
    run = _ok("run", "new", "demo", "--preset", "smoke", "--set", "max_steps=16", "--set", "lr=3e-3",
              "--wait", home=home)
    adapter = run["result"]["artifact_id"]
    merge = _ok("merge", str(adapter), "--wait", home=home)
    assert merge["status"] == "completed"
    merged = _ok("artifact", "show", str(merge["result"]["artifact_id"]), home=home)
    adapter_row = _ok("artifact", "show", str(adapter), home=home)
    assert merged["kind"] == "merged" and merged["parent_id"] == adapter
    assert _merged_logit_gap(adapter_row["meta"]["base_model"], adapter_row["path"], merged["path"]) < 1e-4

    conv = _ok("convert", str(merged["id"]), "--quant", "q8_0,q4_k_m", "--wait", home=home)
    assert conv["status"] == "completed" and conv["result"]["fidelity"] == "pass", conv
    f16 = _ok("artifact", "show", str(conv["result"]["artifact_id"]), home=home)
    # lineage: gguf -> merged -> adapter -> demo model, and the run's dataset reached the fidelity check
    assert [a["kind"] for a in f16["lineage"]] == ["merged", "adapter", "model"]
    assert f16["meta"]["fidelity"]["agreement"]["top1_agreement"] >= 0.99
    quants = {q["type"]: q for q in conv["result"]["quants"]}
    assert set(quants) == {"q8_0", "q4_k_m"} and all(q["fidelity"] == "pass" for q in quants.values())
    outputs = {name: _generate(Path(path)) for name, path in
               [("f16", f16["path"]), *((t, q["path"]) for t, q in quants.items())]}
    assert all(len(tokens) > 0 for tokens in outputs.values())
    assert outputs["q8_0"] == outputs["f16"]  # 8-bit keeps greedy answers on this model

    lora = _ok("convert", str(adapter), "--wait", home=home)
    assert lora["status"] == "completed" and lora["result"]["fidelity"] == "pass"
    lora_row = _ok("artifact", "show", str(lora["result"]["artifact_id"]), home=home)
    assert lora_row["kind"] == "gguf-lora" and lora_row["meta"]["fidelity"]["agreement"]["top1_agreement"] >= 0.99
    lora_gguf = Path(lora["result"]["path"])
    base_gguf = _ok("convert", "1", "--wait", home=home)["result"]["path"]
    # the base GGUF with the GGUF adapter answers like the merged model's GGUF: the first greedy token is the same;
    # later ones may part at a near-tie (the adapter applied at run time vs folded into f16 weights: seen
    # [407, 383] vs [407, 389] after the optimizer default changed)
    with_lora = _generate(Path(base_gguf), lora=lora_gguf)
    assert with_lora and with_lora[0] == outputs["f16"][0], (with_lora, outputs["f16"])

    ev = _ok("eval", str(merged["id"]), "--dataset", "demo", "--compare", "base", "--wait", home=home)
    assert ev["result"]["dataset"]["perplexity"] > 0 and "forgetting" in ev["result"]
