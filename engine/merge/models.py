"""The `merge-models` job: combine several full models, or several LoRA adapters of one base, into one model.

Full models are merged tensor by tensor, streamed from their safetensors files (`safe_open`), so memory
holds one output shard (at most the whole model) plus, per tensor, the inputs' copies and a few float32
temporaries of the formula; the formulas are `engine.merge.methods`.

LoRA adapters of the same base: the base is loaded once (fp32) with every adapter attached by peft.
- linear: peft's `add_weighted_adapter(combination_type="cat")`, which is exact (the new adapter's B·A is
  sum_i w_i s_i B_i A_i), then `merge_and_unload`.
- slerp, ties, dare_ties, dare_linear: peft has no slerp for adapters, and its ties/dare variants either work
  on the A and B factors separately (not the task vectors the methods are defined on) or truncate the result
  with an SVD. So tunedeck takes each adapter's exact task vector per layer (peft's `get_delta_weight`) and
  applies the same formulas as for full models to base + delta. Merging adapters therefore gives the same
  model as first merging each adapter into the base and then merging those full models.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engine.jobctx import JobContext
from engine.merge.compat import read_config, tensor_index
from engine.merge.methods import merge_tensor
from engine.merge.output import copy_model_files, fresh_tmp, peak_rss_mb, publish, remove_on_error, write_provenance
from engine.merge.shards import ShardWriter
from store.errors import NotFound, Refused
from store.payloads import MergeModelsConfig


def run_merge_models_job(ctx: JobContext) -> None:
    """Merge `inputs` onto `base` with `method` and register the result as a `merged` artifact."""
    cfg = ctx.config_as(MergeModelsConfig)
    cfg.require("method", "base", "inputs", "weights")
    method, weights, density, seed = str(cfg.method), list(cfg.weights), cfg.density, cfg.seed
    base, inputs = cfg.base, cfg.inputs
    assert base is not None  # required above
    for source in (base, *inputs):
        if not Path(source.path).is_dir():
            raise NotFound(f"{source.label}: folder {source.path} is missing (moved or deleted since queued?)")
    labels = ", ".join(s.label for s in inputs)
    ctx.log(f"{method} merge of {labels} on base {base.label} (weights {weights}"
            + (f", density {density}, seed {seed})" if density is not None else ")"))
    started = time.monotonic()
    ctx.progress(0.01, force=True)
    tmp = fresh_tmp(ctx.job_dir)
    base_dir, input_dirs = Path(base.path), [Path(s.path) for s in inputs]
    params = {"weights": weights, "density": density if density is not None else 1.0, "seed": seed}
    with remove_on_error(tmp):
        if cfg.input_kind == "adapter":
            count = merge_adapters(ctx, method, base_dir, input_dirs, params, tmp)
        else:
            count = merge_full_models(ctx, method, base_dir, input_dirs, params, tmp)
        copy_model_files(base_dir, tmp)  # config, generation config, tokenizer and chat template
    meta = {"method": method, "base_model": str(base_dir), "base_artifact_id": base.artifact_id,
            "input_kind": cfg.input_kind, "weights": weights, "density": density,
            "inputs": [{"label": s.label, "path": s.path, "artifact_id": s.artifact_id, "kind": s.kind}
                       for s in inputs],
            **({"seed": seed} if method.startswith("dare") else {})}
    write_provenance(tmp, {"kind": "merge-models", "job_id": ctx.job_id, **meta})
    out = publish(tmp, ctx.job_dir)
    peak = peak_rss_mb()
    seconds = round(time.monotonic() - started, 2)
    ctx.log(f"merged {count} tensors into {out} in {seconds:.1f} s (peak RSS {peak:.0f} MB)")

    from engine.artifacts import register_artifact

    with ctx.store.write() as session:
        artifact = register_artifact(session, cfg.project, "merged", out, name=cfg.name,
                                     job_id=ctx.job_id, parent_id=base.artifact_id, meta=meta)
    ctx.set_result(artifact_id=artifact.id, path=str(out), tensors=count, peak_rss_mb=peak, seconds=seconds)
    ctx.log(f"registered merged model as artifact {artifact.id}")


def merge_full_models(ctx: JobContext, method: str, base_dir: Path, input_dirs: list[Path], params: dict[str, Any],
                      dest: Path) -> int:
    """Stream every tensor of the base and the inputs through `merge_tensor` into `dest`; returns the count."""
    from safetensors import safe_open

    base_index = tensor_index(base_dir)
    indexes = [tensor_index(d) for d in input_dirs]
    for folder, index in zip(input_dirs, indexes, strict=True):
        missing = [name for name in base_index if name not in index or index[name].shape != base_index[name].shape]
        if missing:  # the folders changed since the job was queued
            raise Refused(f"{folder} no longer matches the base: {missing[0]} is missing or has another shape")
    def read(file: Path, name: str) -> Any:
        # A fresh handle per tensor: a long-lived one keeps every page it touched mapped, which counts as
        # resident memory (three inputs would then show up as three models' worth of RSS).
        with safe_open(str(file), framework="pt", device="cpu") as handle:
            return handle.get_tensor(name)

    writer = ShardWriter(dest)
    total = len(base_index)
    for i, (name, info) in enumerate(base_index.items(), start=1):
        ctx.check_cancel()
        base_tensor = read(info.file, name)
        tensors = [read(index[name].file, name) for index in indexes]
        writer.add(name, merge_tensor(method, base_tensor, tensors, name=name, **params))
        del base_tensor, tensors
        ctx.progress(0.9 * i / total, step=i, total=total)
    writer.close()
    return total


def merge_adapters(ctx: JobContext, method: str, base_dir: Path, adapter_dirs: list[Path], params: dict[str, Any],
                   dest: Path) -> int:
    """Merge LoRA adapters of `base_dir` (see the module docstring) and save the model to `dest`; returns how
    many adapted layers were merged."""
    import torch
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    config = read_config(base_dir)
    stored = config.get("dtype") or config.get("torch_dtype") or "float32"
    save_dtype = getattr(torch, str(stored), torch.float32)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    names = [f"input{i}" for i in range(len(adapter_dirs))]
    peft_model = PeftModel.from_pretrained(model, str(adapter_dirs[0]), adapter_name=names[0], is_trainable=False)
    for adapter_name, folder in zip(names[1:], adapter_dirs[1:], strict=True):
        peft_model.load_adapter(str(folder), adapter_name=adapter_name, is_trainable=False)
    ctx.check_cancel()
    ctx.progress(0.3, force=True)
    layers = [(n, m) for n, m in peft_model.named_modules() if isinstance(m, LoraLayer)]
    rslora = any(getattr(c, "use_rslora", False) for c in peft_model.peft_config.values())
    if method == "linear" and not rslora:  # peft's "cat" sets alpha = r, i.e. scale 1, which rsLoRA would change
        total = sum(params["weights"])
        peft_model.add_weighted_adapter(names, [w / total for w in params["weights"]], "merged",
                                        combination_type="cat")
        peft_model.set_adapter("merged")
        merged = peft_model.merge_and_unload(adapter_names=["merged"])
    else:
        with torch.no_grad():
            for i, (module_name, layer) in enumerate(layers, start=1):
                ctx.check_cancel()
                weight = layer.get_base_layer().weight
                base_w = weight.detach()
                deltas = [layer.get_delta_weight(a) if a in layer.lora_A or a in layer.lora_embedding_A
                          else torch.zeros_like(base_w) for a in names]
                key = module_name.removeprefix("base_model.model.") + ".weight"  # the checkpoint's tensor name
                weight.copy_(merge_tensor(method, base_w, [base_w + d for d in deltas], name=key, **params))
                ctx.progress(0.3 + 0.5 * i / len(layers), step=i, total=len(layers))
        merged = peft_model.unload()
    ctx.check_cancel()
    merged.to(save_dtype).save_pretrained(str(dest))
    ctx.progress(0.95, force=True)
    return len(layers)
