"""The bridge from the HF Trainer to the store: metrics, progress, heartbeat, cancel."""

from __future__ import annotations

import math
import resource
import time
from typing import Any

from engine.jobctx import JobContext
from store.metrics import upsert_metrics

KEEP = {"loss", "eval_loss", "learning_rate", "grad_norm", "epoch", "mean_token_accuracy", "eval_mean_token_accuracy",
        "entropy", "num_tokens", "rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins",
        "eval_rewards/accuracies", "eval_rewards/margins", "train_loss", "train_runtime",
        "train_steps_per_second"}


def peak_memory_mb() -> float:
    """Peak GPU memory allocated (MB) on a GPU, else the process's peak RSS."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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
            import torch

            self.gpu = torch.cuda.is_available()

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._t_last, self._step_last = time.monotonic(), state.global_step
            self.ctx.progress(state.global_step / max(state.max_steps, 1), step=state.global_step,
                              total=state.max_steps, force=True)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None,
                   **kwargs: Any) -> None:
            if not logs or not state.is_world_process_zero:
                return
            now = time.monotonic()
            values = {k: float(v) for k, v in logs.items() if k in KEEP and isinstance(v, int | float)}
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
            if "eval_loss" in values and values["eval_loss"] < 50:
                values["eval_perplexity"] = math.exp(values["eval_loss"])
            with self.ctx.store.write() as session:
                upsert_metrics(session, self.ctx.job_id, state.global_step, values)
            if self.gpu:  # utilization and memory over time, for the run's GPU chart and calibration
                from engine.gpu.record import record_sample

                record_sample(self.ctx.store, self.ctx.job_id, state.global_step)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.ctx.progress(state.global_step / max(state.max_steps, 1), step=state.global_step,
                              total=state.max_steps, force=True)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            frac = state.global_step / max(state.max_steps, 1)
            self.ctx.progress(frac, step=state.global_step, total=state.max_steps)
            if self.ctx.should_stop():
                self.cancelled = True
                control.should_save = True  # a checkpoint at this step, so resume loses nothing
                control.should_training_stop = True
            elif (state.global_step >= state.max_steps and state.save_steps
                  and state.global_step % state.save_steps != 0):
                # transformers saves a full checkpoint (optimizer states too) at the last step; the engine
                # writes the final adapter or model right after train() returns, so that save is pure cost
                # (gigabytes on a real model). A kill in between resumes from the last periodic checkpoint.
                control.should_save = False

    return StoreCallback(ctx)
