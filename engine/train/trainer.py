"""The `train` job: SFT, DPO, ORPO, KTO, reward-model or GRPO training with LoRA, QLoRA (bitsandbytes 4-bit) or
full fine-tuning (each objective's TRL trainer: engine/train/trainers.py).

Checkpoints go to `jobs/<id>/checkpoints/`; a job that is queued again after a cancel,
a kill or a crash resumes from the newest complete checkpoint. On success the adapter (or
the full model) is saved with its tokenizer under `jobs/<id>/output/` and registered as an
artifact whose lineage names the job, the dataset and the base model. A reward model is saved whole (a LoRA
merged into it), ready to score, as an artifact of kind `reward-model`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from engine.artifacts import REWARD_MODEL
from engine.jobctx import JobCancelled, JobContext
from engine.train.config import RunConfig, parse_config, resolve_precision
from engine.train.data import read_split
from store.diskfull import DiskFull, disk_full_message, is_disk_full, writing
from store.errors import TunedeckError, first_line
from store.payloads import TrainConfig

SUGGESTIONS = ("a smaller per_device_batch with more grad_accum", "a shorter max_length",
               "gradient_checkpointing: true", "method: qlora", "a lower lora.r")


def _complete(checkpoint: Path) -> bool:
    """Whether a checkpoint was saved to the end: its trainer_state.json (written last) reads as JSON."""
    try:
        json.loads((checkpoint / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def _step(checkpoint: Path) -> int:
    """The step a `checkpoint-N` folder was saved at."""
    return int(checkpoint.name.split("-")[-1])


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint, if any."""
    done = [p for p in folder.glob("checkpoint-*") if _complete(p)]
    return max(done, key=_step, default=None)


def drop_partial_checkpoints(folder: Path, exc: BaseException) -> DiskFull | None:
    """After training failed with `exc`: remove the checkpoints it left half-written, and return a DiskFull
    naming the one being written when the disk filled up (None when the failure was something else)."""
    partial = sorted((p for p in folder.glob("checkpoint-*") if not _complete(p)), key=_step)
    full = not isinstance(exc, TunedeckError) and is_disk_full(exc, folder, while_writing=bool(partial))
    for path in partial:
        shutil.rmtree(path, ignore_errors=True)
    if not full:
        return None
    return DiskFull(disk_full_message(partial[-1] if partial else folder, "the earlier checkpoints are kept"))


def _dtype(name: str) -> Any:
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]


def load_model(cfg: RunConfig, model_path: str, precision: str, cuda: bool,
               attn_implementation: str | None = None) -> tuple[Any, Any]:
    """The tokenizer and the (possibly 4-bit, possibly LoRA-wrapped) model to train: a causal LM, or for a reward
    model the same network with a one-output sequence-classification head (attention kernel as resolved by
    engine.train.speed; None = the library's default)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=cfg.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code, "dtype": _dtype(precision)}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    if cfg.method == "qlora":
        from transformers import BitsAndBytesConfig

        compute = precision if cfg.quant.compute_dtype == "auto" else cfg.quant.compute_dtype
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type=cfg.quant.quant_type,
            bnb_4bit_use_double_quant=cfg.quant.double_quant, bnb_4bit_compute_dtype=_dtype(compute),
        )
        if cuda:  # each process of a distributed run holds its own copy on its own card
            kwargs["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0") or 0)}
    reward = cfg.objective == "reward"
    if reward:
        from transformers.utils import logging as hf_logging

        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "score.weight newly initialized": that head is what a reward run trains
        try:
            model = AutoModelForSequenceClassification.from_pretrained(model_path, num_labels=1, **kwargs)
        finally:
            hf_logging.set_verbosity(level)
        model.config.pad_token_id = tokenizer.pad_token_id
    else:
        model = AutoModelForCausalLM.from_pretrained(model_path, **kwargs)
    if cfg.method == "full":
        return tokenizer, model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if cfg.method == "qlora":
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.training.gradient_checkpointing
        )
    lora = LoraConfig(
        r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules, task_type="SEQ_CLS" if reward else "CAUSAL_LM",
    )
    return tokenizer, get_peft_model(model, lora)


def load_checked(cfg: RunConfig, model_path: str, precision: str, cuda: bool,
                 attn_implementation: str | None = None) -> tuple[Any, Any]:
    """`load_model`, after checking a local folder again (it may have changed since the run was queued). A model
    that still fails to load ends the job with one line naming it; the traceback goes to the job's log."""
    import traceback

    from engine.model_folder import check_model_folder

    if Path(model_path).is_dir():
        check_model_folder(Path(model_path), trust_remote_code=cfg.trust_remote_code)
    try:
        return load_model(cfg, model_path, precision, cuda, attn_implementation)
    except Exception as exc:
        if isinstance(exc, TunedeckError) or is_oom(exc):
            raise
        traceback.print_exc()
        reason = first_line(str(exc), type(exc).__name__)
        raise TunedeckError(f"cannot load the model {model_path}: {reason}") from None

def trainer_args(cfg: RunConfig, out: Path, precision: str, cuda: bool, has_eval: bool) -> dict[str, Any]:
    """Keyword arguments shared by every objective's TRL config."""
    t = cfg.training
    return {
        "output_dir": str(out), "num_train_epochs": t.epochs, "max_steps": t.max_steps,
        "per_device_train_batch_size": t.per_device_batch, "per_device_eval_batch_size": t.per_device_batch,
        "gradient_accumulation_steps": t.grad_accum, "learning_rate": t.learning_rate,
        "lr_scheduler_type": t.scheduler, "warmup_steps": t.warmup, "weight_decay": t.weight_decay,
        "max_length": t.max_length, "activation_checkpointing": t.gradient_checkpointing,
        "bf16": precision == "bf16", "fp16": precision == "fp16", "use_cpu": not cuda,
        "logging_steps": t.logging_steps, "logging_first_step": True,
        "eval_strategy": "steps" if has_eval and t.eval_steps else "no", "eval_steps": t.eval_steps or None,
        "eval_on_start": bool(has_eval and t.eval_steps),  # the baseline every later eval is compared with
        "save_strategy": "steps", "save_steps": t.save_steps, "save_total_limit": t.save_total_limit,
        "seed": t.seed, "data_seed": t.seed, "report_to": "none", "disable_tqdm": True,
        "ddp_find_unused_parameters": False,  # every trainable weight takes part in each step (DDP: no extra pass)
    }


def is_oom(exc: BaseException) -> bool:
    """Whether an exception means memory ran out: CUDA's OOM, Python's MemoryError, or the CPU allocator's
    "can't allocate memory" (which says neither "out of memory" nor raises MemoryError)."""
    text = str(exc).lower()
    return (isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError"
            or "out of memory" in text or "can't allocate memory" in text)


def _oom_message(step: int, exc: BaseException) -> str:
    from engine.train.callback import peak_memory_mb

    capacity = ""
    try:
        import torch

        if torch.cuda.is_available():
            capacity = f" of {torch.cuda.get_device_properties(0).total_memory / 2**30:.1f} GiB"
    except Exception:  # the message matters more than the figure
        pass
    return (f"out of memory at step {step} (peak {peak_memory_mb() / 1024:.1f} GiB{capacity}): try "
            + ", ".join(SUGGESTIONS) + f". ({type(exc).__name__})")


def run_train_job(ctx: JobContext) -> None:
    """Job handler for kind `train` (config: store.payloads.TrainConfig: run, dataset_path, model_path...)."""
    import torch

    job = ctx.config_as(TrainConfig)
    job.require("run", "dataset_path", "model_path")
    model_path = str(job.model_path)
    cfg = parse_config(job.run, source=f"job {ctx.job_id} config")
    cuda = torch.cuda.is_available()
    precision = resolve_precision(cfg, cuda, cuda and torch.cuda.is_bf16_supported())
    folder = Path(str(job.dataset_path))
    train_rows, val_rows = read_split(folder, "train"), read_split(folder, "val")
    ckpt_dir = ctx.job_dir / "checkpoints"
    resume = latest_checkpoint(ckpt_dir)
    ctx.log(f"{cfg.objective}/{cfg.method} on {model_path} with dataset {folder.name} "
            f"({len(train_rows)} train, {len(val_rows)} val), precision {precision}, "
            f"{'cuda' if cuda else 'cpu'}" + (f"; resuming from {resume.name}" if resume else ""))
    from engine.train.speed import detect_speed

    speed = detect_speed(cfg, cuda)
    ctx.log(speed.log_line())
    ctx.set_result(**speed.result())  # shown by the run screen while the run trains, not only once it ends
    from transformers import set_seed

    set_seed(cfg.training.seed)  # LoRA's A matrices are drawn when the model is wrapped, before the Trainer seeds
    tokenizer, model = load_checked(cfg, model_path, precision, cuda, speed.attn_implementation)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    four_bit = sum(1 for m in model.modules() if type(m).__name__ == "Linear4bit")
    ctx.log(f"model loaded: {trainable:,} trainable parameters" + (f", {four_bit} Linear4bit layers "
            f"({cfg.quant.quant_type}, double quant {cfg.quant.double_quant})" if four_bit else ""))
    ctx.check_cancel()
    if cuda and ctx.main:  # kept beside the measured peak, so estimates calibrate on this machine's runs
        from engine.gpu.runrecord import record_run_estimate

        if est := record_run_estimate(ctx.store, ctx.job_id, job.run, model_path):
            ctx.log(f"estimated GPU memory {est.get('total_bytes', 0) / 2**30:.1f} GiB")

    from engine.train.callback import AlreadyTrained, store_callback
    from engine.train.speed import sft_packing_args, speed_args
    from engine.train.trackers import tracker_setup
    from engine.train.trainers import build_trainer

    callback = store_callback(ctx)
    args = trainer_args(cfg, ckpt_dir, precision, cuda, bool(val_rows))
    tracking, lines = tracker_setup(list(cfg.report_to), ctx.job_dir, ctx.job_id)
    args.update(tracking)
    args.update(speed_args(speed))
    for line in lines:
        ctx.log(line)
    trainer = build_trainer(cfg, model, tokenizer, args, train_rows, val_rows, callback, job,
                            sft_args=sft_packing_args(speed))
    if cfg.objective == "sft":
        from engine.evaluate.perplexity import per_token_eval_loss

        per_token_eval_loss(trainer)  # eval_loss over every scored token, as `tunedeck eval` measures it
    callback.trainer = trainer
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except AlreadyTrained:  # resumed from the last step's checkpoint: the model holds its weights; finish
        pass
    except Exception as exc:
        if is_oom(exc):
            raise TunedeckError(_oom_message(trainer.state.global_step, exc)) from None
        if full := drop_partial_checkpoints(ckpt_dir, exc):  # e.g. torch.save's "unexpected pos" on ENOSPC
            raise full from exc
        raise
    if callback.cancelled:
        raise JobCancelled(f"cancelled at step {trainer.state.global_step}; checkpoint saved")
    if cuda and ctx.main:
        from engine.gpu.calibrate import record_measured
        from engine.train.callback import peak_memory_mb

        record_measured(ctx.store, ctx.job_id, peak_memory_mb())
    try:
        with writing(ctx.job_dir / "output", "the checkpoints are kept"):
            _finish(ctx, job, cfg, trainer, tokenizer, bool(val_rows), speed.result())
    except BaseException:
        shutil.rmtree(ctx.job_dir / ".output-tmp", ignore_errors=True)
        raise


def final_eval(objective: str, metrics: dict[str, Any]) -> dict[str, float]:
    """What the last evaluation of a run other than SFT reports: the objective's own metrics
    (engine.train.objectives.FINAL_EVAL), finite values only."""
    import math

    from engine.train.objectives import FINAL_EVAL

    final: dict[str, float] = {}
    for key in FINAL_EVAL.get(objective, ()):
        value = metrics.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            final[key] = float(value)
    return final


def merge_reward_adapter(folder: Path, pad_token_id: int | None, trust_remote_code: bool) -> None:
    """Turn a saved reward-model LoRA (with its trained score head) into the whole merged model, in place, so the
    artifact loads with AutoModelForSequenceClassification alone (as GRPO's reward does)."""
    from peft import AutoPeftModelForSequenceClassification

    peft_model = AutoPeftModelForSequenceClassification.from_pretrained(
        str(folder), num_labels=1, trust_remote_code=trust_remote_code)
    merged = peft_model.merge_and_unload()
    merged.config.pad_token_id = pad_token_id
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "README.md"):
        (folder / name).unlink(missing_ok=True)
    merged.save_pretrained(str(folder))


def _finish(ctx: JobContext, job: TrainConfig, cfg: RunConfig, trainer: Any, tokenizer: Any, has_eval: bool,
            speed: dict[str, Any] | None = None) -> None:
    from engine.artifacts import register_artifact
    from engine.tokenizer_files import write_added_tokens_decoder
    from store.metrics import upsert_metrics

    step = trainer.state.global_step
    final: dict[str, float] = {}
    if has_eval and cfg.objective != "sft":  # no perplexity: exp of a preference or reward loss means nothing
        final = final_eval(cfg.objective, trainer.evaluate())
    elif has_eval:
        final["eval_loss"] = float(trainer.evaluate()["eval_loss"])
        if final["eval_loss"] < 50:
            import math

            final["eval_perplexity"] = math.exp(final["eval_loss"])
    out = ctx.job_dir / "output"
    tmp = ctx.job_dir / ".output-tmp"
    if ctx.main:
        shutil.rmtree(tmp, ignore_errors=True)
    if trainer.args.world_size > 1:
        trainer.accelerator.wait_for_everyone()
        trainer.save_model(str(tmp))  # every rank: FSDP and DeepSpeed gather the shards; rank 0 writes
        trainer.accelerator.wait_for_everyone()
        if not ctx.main:
            return
    else:
        adapters = getattr(trainer.model, "peft_config", {})
        # DPO and KTO add a frozen copy of the adapter ("ref") as their reference model: not part of the result
        extra = {"selected_adapters": ["default"]} if "ref" in adapters and "default" in adapters else {}
        trainer.model.save_pretrained(str(tmp), **extra)
    if cfg.objective == "reward" and cfg.method != "full":
        merge_reward_adapter(tmp, tokenizer.pad_token_id, cfg.trust_remote_code)
    tokenizer.save_pretrained(str(tmp))
    write_added_tokens_decoder(tmp)  # so llama.cpp's converter types the chat markers as control tokens
    (tmp / "tunedeck_run.json").write_text(json.dumps(ctx.config, indent=2, default=str))
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    kind = REWARD_MODEL if cfg.objective == "reward" else "model" if cfg.method == "full" else "adapter"
    with ctx.store.write() as session:
        if final:
            upsert_metrics(session, ctx.job_id, step, final)
        artifact = register_artifact(
            session, job.project, kind, out, name=f"run{ctx.job_id}-{kind}", job_id=ctx.job_id,
            parent_id=job.model_artifact_id,
            meta={"base_model": job.model_path, "dataset_id": job.dataset_id,
                  "dataset_hash": job.dataset_hash, "method": cfg.method,
                  "objective": cfg.objective, "steps": step, **final},
        )
    ctx.set_result(artifact_id=artifact.id, steps=step, processes=trainer.args.world_size, **(speed or {}), **final)
    shown = ", ".join(f"{k} {v:.4f}" for k, v in final.items())
    ctx.log(f"saved {kind} to {out} (artifact {artifact.id})" + (f": {shown}" if shown else ""))
