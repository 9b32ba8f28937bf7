"""The `merge` job: fold a LoRA (or QLoRA) adapter into its base and save a standalone model.

The base is loaded un-quantized, in the requested dtype, on the CPU (transformers 5 builds the model
on the meta device and fills it from the checkpoint, so there is no second full copy), and peft merges
W += scale · B·A in place, layer by layer. A QLoRA adapter is merged into the 16/32-bit base, never
into a 4-bit one. The result (weights, config, generation config, tokenizer with its chat template)
is written to a temp folder, renamed to `jobs/<id>/output` and registered as a `merged` artifact.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from engine.jobctx import JobContext
from engine.merge.methods import DTYPES
from engine.merge.output import (
    copy_model_files,
    copy_tokenizer,
    fresh_tmp,
    peak_rss_mb,
    publish,
    remove_on_error,
    write_provenance,
)
from store.errors import NotFound, Refused
from store.payloads import MergeConfig


def torch_dtype(name: str) -> Any:
    """torch dtype for `bf16|fp16|fp32`."""
    import torch

    try:
        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]
    except KeyError:
        raise Refused(f"unknown dtype {name!r} (one of {', '.join(DTYPES)})") from None


def run_merge_job(ctx: JobContext) -> None:
    """Merge the adapter `adapter_path` into `base_path` and register the result."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    cfg = ctx.config_as(MergeConfig)
    cfg.require("adapter_path", "base_path")
    adapter_path, base_path = Path(str(cfg.adapter_path)), Path(str(cfg.base_path))
    for path, what in ((adapter_path, "adapter"), (base_path, "base model")):
        if not path.is_dir():
            raise NotFound(f"{what} folder {path} is missing (moved or deleted since the merge was queued?)")
    dtype_name = cfg.dtype
    dtype = torch_dtype(dtype_name)
    method = cfg.method or "lora"
    note = " (QLoRA: into the un-quantized base)" if method == "qlora" else ""
    ctx.log(f"merging adapter {adapter_path} into {base_path} in {dtype_name}{note}")
    hf_logging.disable_progress_bar()
    started = time.monotonic()
    ctx.progress(0.05, force=True)

    base = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=dtype)
    ctx.log(f"loaded the base in {time.monotonic() - started:.1f} s")
    ctx.check_cancel()
    ctx.progress(0.4, force=True)

    model = PeftModel.from_pretrained(base, str(adapter_path), is_trainable=False)
    merged = model.merge_and_unload()
    ctx.log(f"merged in {time.monotonic() - started:.1f} s")
    ctx.check_cancel()
    ctx.progress(0.7, force=True)

    tmp = fresh_tmp(ctx.job_dir)
    with remove_on_error(tmp):
        merged.save_pretrained(str(tmp))
        copy_tokenizer([adapter_path, base_path], tmp)  # the adapter's (as trained), else the base's
        copy_model_files(base_path, tmp)  # generation_config.json etc. when save_pretrained did not write them
        write_provenance(tmp, {"kind": "merge", "job_id": ctx.job_id, "adapter": str(adapter_path),
                               "adapter_artifact_id": cfg.artifact_id, "base_model": str(base_path),
                               "dtype": dtype_name, "method": method})
    del merged, model, base
    out = publish(tmp, ctx.job_dir)
    peak = peak_rss_mb()
    ctx.log(f"saved to {out} in {time.monotonic() - started:.1f} s (peak RSS {peak:.0f} MB)")
    ctx.progress(0.95, force=True)

    from engine.artifacts import register_artifact

    with ctx.store.write() as session:
        artifact = register_artifact(
            session, cfg.project, "merged", out, name=cfg.name, job_id=ctx.job_id,
            parent_id=cfg.artifact_id,
            meta={"base_model": str(base_path), "adapter_artifact_id": cfg.artifact_id,
                  "adapter_path": str(adapter_path), "dtype": dtype_name, "method": method, "merge": "adapter"},
        )
    ctx.set_result(artifact_id=artifact.id, path=str(out), peak_rss_mb=peak,
                   seconds=round(time.monotonic() - started, 2))
    ctx.log(f"registered merged model as artifact {artifact.id}")
