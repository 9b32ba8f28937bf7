"""The bridge from the HF Trainer to the store: metrics, progress, heartbeat, cancel."""

from __future__ import annotations

import math
import resource
import time
from typing import Any

from engine.jobctx import JobContext, before_checkpoint
from engine.train.objectives import has_perplexity, keeps
from store.metrics import upsert_metrics
from store.payloads import TrainConfig

# Kept for every objective; each objective's own metrics: engine.train.objectives.METRICS.
KEEP = {"loss", "eval_loss", "learning_rate", "grad_norm", "epoch", "num_tokens", "train_loss", "train_runtime",
        "train_steps_per_second"}
RESUME_STATE = "tunedeck"  # our entry in a checkpoint's trainer_state.json: what a resume needs and HF does not keep


class AlreadyTrained(Exception):
    """Raised before the first step of a run resumed from a checkpoint at its last step (transformers would
    train one step past max_steps); the model then holds that checkpoint's weights, ready to be saved."""


def peak_memory_mb() -> float:
    """Peak GPU memory allocated (MB) on a GPU, else the process's peak RSS."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def any_rank(flag: bool, device: Any) -> bool:
    """True on every rank when `flag` is true on any rank (one tiny all-reduce)."""
    import torch
    import torch.distributed as dist

    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def store_callback(ctx: JobContext) -> Any:
    """A `TrainerCallback` that writes every logged value as a metric (upserted by job, step,
    name), reports progress, and turns a cancel request into save-a-checkpoint-and-stop."""
    from transformers import TrainerCallback

    class StoreCallback(TrainerCallback):
        def __init__(self, ctx: JobContext) -> None:
            self.ctx = ctx
            self.cancelled = False
            self._t_last = time.monotonic()
            self._step_last = 0
            self._tokens_last: float | None = None
            self.trainer: Any = None  # set by the engine: the counters a checkpoint must carry live on it
            self._first_step = 0  # the step this process started (or resumed) at
            self._loss_before = 0.0  # the sum of the per-step losses up to that step
            import torch

            self.gpu = torch.cuda.is_available()
            self.objective = str(ctx.config_as(TrainConfig).run.get("objective", "sft"))

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._t_last, self._step_last = time.monotonic(), state.global_step
            self._first_step = state.global_step
            saved = (state.stateful_callbacks or {}).get(RESUME_STATE, {}) if state.global_step else {}
            self._loss_before = float(saved.get("loss_sum", 0.0))
            if saved.get("num_tokens") is not None and hasattr(self.trainer, "_total_train_tokens"):
                self.trainer._total_train_tokens = saved["num_tokens"]  # TRL would count from 0 again
            self.ctx.progress(state.global_step / max(state.max_steps, 1), step=state.global_step,
                              total=state.max_steps, force=True)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                   **kwargs: Any) -> None:
            if not logs or not state.is_world_process_zero:
                return
            now = time.monotonic()
            values = {k: float(v) for k, v in logs.items()
                      if (k in KEEP or keeps(self.objective, k)) and isinstance(v, int | float)}
            if "train_loss" in values and self._first_step:  # transformers averages this process's steps only
                done = state.global_step - self._first_step
                values["train_loss"] = (self._loss_before + values["train_loss"] * done) / max(state.global_step, 1)
            steps = state.global_step - self._step_last
            if steps > 0 and "loss" in values:
                step_time = (now - self._t_last) / steps
                values["step_time"] = step_time
                values["eta_s"] = step_time * max(state.max_steps - state.global_step, 0)
                tokens = logs.get("num_tokens")
                if tokens is not None and self._tokens_last is not None and now > self._t_last:
                    values["tokens_per_s"] = (float(tokens) - self._tokens_last) / (now - self._t_last)
                if tokens is not None:
                    self._tokens_last = float(tokens)
                self._t_last, self._step_last = now, state.global_step
            values["peak_memory_mb"] = peak_memory_mb()
            if has_perplexity(self.objective) and "eval_loss" in values and values["eval_loss"] < 50:
                values["eval_perplexity"] = math.exp(values["eval_loss"])
            with self.ctx.store.write() as session:
                upsert_metrics(session, self.ctx.job_id, state.global_step, values)
            if control.should_save:  # a checkpoint follows this log (and its evaluation): mirror the metrics first
                before_checkpoint()
            if self.gpu:  # utilization and memory over time, for the run's GPU chart and calibration
                from engine.gpu.record import record_sample

                record_sample(self.ctx.store, self.ctx.job_id, state.global_step)

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.max_steps > 0 and state.global_step >= state.max_steps:
                if state.is_world_process_zero and self._loss_before:  # in case the kill came before it was logged
                    with self.ctx.store.write() as session:
                        upsert_metrics(session, self.ctx.job_id, state.global_step,
                                       {"train_loss": self._loss_before / state.global_step})
                raise AlreadyTrained(f"resumed at the last step ({state.global_step})")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.ctx.progress(state.global_step / max(state.max_steps, 1), step=state.global_step,
                              total=state.max_steps, force=True)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            frac = state.global_step / max(state.max_steps, 1)
            self.ctx.progress(frac, step=state.global_step, total=state.max_steps)
            stop = self.ctx.should_stop()
            if args.world_size > 1:  # every rank must stop at the same step, or the others wait forever
                stop = any_rank(stop, args.device)
            if stop:
                self.cancelled = True
                control.should_save = True  # a checkpoint at this step, so resume loses nothing
                control.should_training_stop = True
            elif (state.global_step >= state.max_steps and state.save_steps
                  and state.global_step % state.save_steps != 0):
                # transformers saves a full checkpoint (optimizer states too) at the last step; the engine
                # writes the final adapter or model right after train() returns, so that save is pure cost
                # (gigabytes on a real model). A kill in between resumes from the last periodic checkpoint.
                control.should_save = False
            if control.should_save:
                state.stateful_callbacks[RESUME_STATE] = self._resume_state()
                if state.is_world_process_zero:
                    before_checkpoint()

        def _resume_state(self) -> dict[str, Any]:
            """What a resume from a checkpoint saved at this step needs that transformers does not keep: the sum
            of the per-step losses so far (for the whole run's train_loss) and TRL's count of tokens."""
            saved: dict[str, Any] = {}
            tr_loss, total = getattr(self.trainer, "_tr_loss", None), getattr(self.trainer, "_total_loss_scalar", None)
            if tr_loss is not None and total is not None:  # the logged part, and the part since the last log
                saved["loss_sum"] = self._loss_before + total + float(tr_loss.item())
            if hasattr(self.trainer, "_total_train_tokens"):
                saved["num_tokens"] = self.trainer._total_train_tokens
            return saved

    return StoreCallback(ctx)
