"""GPTQ / AWQ compression with llm-compressor, run by the compress job in llm-compressor's own environment.

Started as `<compressor venv>/bin/python -P worker.py SPEC.json` (see engine/compress/toolenv.py): it imports only
llmcompressor, compressed-tensors, transformers, datasets and torch from that environment, plus tunedeck's
perplexity code (engine/evaluate/perplexity.py, which imports nothing at module level). The spec names the source
model, the method, the calibration and evaluation token sequences (tokenized by the job with the model's own
tokenizer, as training saw them) and where to write. It scores the parent, compresses, saves in compressed-tensors
format to a temporary folder beside the output, loads that folder back as a fresh model (proving it loads),
scores it on the same tokens and renames the folder into place; the figures go to the spec's result file.
Lines starting with `@progress ` carry a fraction for the job's progress.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

METHODS = ("gptq", "awq")
SCHEMES = ("W4A16",)


def _say(message: str) -> None:
    print(message, flush=True)


def _progress(fraction: float) -> None:
    print(f"@progress {fraction:.3f}", flush=True)


def _perplexity_code(repo: str) -> Any:
    sys.path.insert(0, repo)
    from engine.evaluate import perplexity

    return perplexity


def _scheme(name: str, group_size: int) -> Any:
    """compressed-tensors' preset `name` with the weights' group size set."""
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from compressed_tensors.quantization.quant_scheme import PRESET_SCHEMES

    weights = PRESET_SCHEMES[name]["weights"].model_dump()
    weights["group_size"] = group_size
    return QuantizationScheme(targets=["Linear"], weights=QuantizationArgs(**weights))


def _recipe(method: str, scheme: Any) -> list[Any]:
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier

    groups = {"group_0": scheme}
    if method == "gptq":
        return [GPTQModifier(config_groups=groups, ignore=["lm_head"])]
    from llmcompressor.modifiers.transform import AWQModifier

    return [AWQModifier(duo_scaling=True), QuantizationModifier(config_groups=groups, ignore=["lm_head"])]


def _cpu_without_pinning() -> None:
    """llmcompressor 0.14's AWQ pins its cached activations in page-locked memory for faster host-to-device
    copies, unconditionally; without an accelerator torch refuses ("Cannot access accelerator device when none is
    available"). There is no device to copy to, so pinning is skipped."""
    import torch

    if torch.accelerator.is_available():
        return
    from llmcompressor.pipelines.cache import IntermediatesCache

    IntermediatesCache.pin_memory = lambda self, *args, **kwargs: None  # type: ignore[method-assign]


def _nll(ppl: Any, model: Any, seqs: list[tuple[list[int], list[int]]], max_length: int) -> dict[str, Any]:
    """Perplexity over `seqs` as `tunedeck eval` measures it, on the GPU when there is one (the model is left
    where it was: llm-compressor places it itself)."""
    import torch

    start = time.perf_counter()
    device = next(model.parameters()).device
    if torch.cuda.is_available():
        model.to("cuda")
    try:
        nll, count = ppl.model_nll(model, seqs, max_length)
    finally:
        model.to(device)
    return ppl._summary(nll, count, time.perf_counter() - start, "transformers")


def _quant_summary(folder: Path) -> dict[str, Any]:
    config = json.loads((folder / "config.json").read_text()).get("quantization_config") or {}
    weights = next(iter((config.get("config_groups") or {}).values()), {}).get("weights") or {}
    return {"quant_method": config.get("quant_method"), "format": config.get("format"),
            "num_bits": weights.get("num_bits"), "group_size": weights.get("group_size"),
            "strategy": weights.get("strategy"), "symmetric": weights.get("symmetric"),
            "ignore": config.get("ignore"), "version": config.get("version")}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Compress `spec["source"]` into `spec["out"]`; the figures as a dict."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if spec["method"] not in METHODS or spec["scheme"] not in SCHEMES:
        raise ValueError(f"method {spec['method']!r} / scheme {spec['scheme']!r}: expected {METHODS} / {SCHEMES}")
    ppl = _perplexity_code(spec["repo"])
    calibration = json.loads(Path(spec["calibration"]).read_text())
    evaluation = [tuple(s) for s in json.loads(Path(spec["eval"]).read_text())]
    out = Path(spec["out"])
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    seconds: dict[str, float] = {}

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(spec["source"])
    model = AutoModelForCausalLM.from_pretrained(spec["source"], dtype="auto")  # saved and served in its dtype
    seconds["load"] = round(time.perf_counter() - start, 2)
    parent = _nll(ppl, model, evaluation, spec["eval_max_length"])
    _say(f"parent perplexity {parent['perplexity']} over {parent['tokens']} held-out tokens")
    _progress(0.15)

    _cpu_without_pinning()
    from llmcompressor import oneshot

    data = Dataset.from_dict({"input_ids": calibration, "attention_mask": [[1] * len(ids) for ids in calibration]})
    _say(f"{spec['method']} {spec['scheme']} (group size {spec['group_size']}) on {len(calibration)} calibration "
         f"sequences, on {'the GPU' if torch.cuda.is_available() else 'the CPU'}")
    start = time.perf_counter()
    oneshot(model=model, tokenizer=tokenizer, dataset=data, recipe=_recipe(spec["method"], _scheme(
        spec["scheme"], spec["group_size"])), num_calibration_samples=len(calibration),
        max_seq_length=spec["max_length"], shuffle_calibration_samples=False)
    seconds["calibrate"] = round(time.perf_counter() - start, 2)
    _progress(0.75)

    start = time.perf_counter()
    model.save_pretrained(tmp, save_compressed=True)
    tokenizer.save_pretrained(tmp)
    seconds["save"] = round(time.perf_counter() - start, 2)
    del model
    summary = _quant_summary(tmp)
    if summary["quant_method"] != "compressed-tensors":
        raise RuntimeError(f"{tmp}/config.json: quantization_config.quant_method is {summary['quant_method']!r}, "
                           "not compressed-tensors")
    start = time.perf_counter()
    reloaded = AutoModelForCausalLM.from_pretrained(str(tmp), dtype="auto")
    seconds["reload"] = round(time.perf_counter() - start, 2)
    compressed = _nll(ppl, reloaded, evaluation, spec["eval_max_length"])
    _say(f"compressed model, loaded back from disk: perplexity {compressed['perplexity']}")
    _progress(0.95)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)

    import compressed_tensors
    import llmcompressor
    import transformers

    versions = {"llmcompressor": llmcompressor.__version__, "compressed_tensors": compressed_tensors.__version__,
                "transformers": transformers.__version__, "torch": torch.__version__}
    return {"parent": parent, "compressed": compressed, "seconds": seconds, "quantization": summary,
            "versions": versions, "path": str(out)}


def main() -> int:
    spec = json.loads(Path(sys.argv[1]).read_text())
    result = run(spec)
    done = Path(spec["result"])
    partial = done.with_name(done.name + ".partial")
    partial.write_text(json.dumps(result, indent=1))
    os.replace(partial, done)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
