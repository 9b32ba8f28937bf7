"""A diagnostic job: ticks for a while, reporting progress and honouring cancel.

Exercises the runner, heartbeats, cancel and kill handling without loading a model;
`config`: seconds (float), steps (int), fail_at (int step to fail at, optional), report_env (names of
environment variables whose values to record in the result: what environment a job process gets).
"""

from __future__ import annotations

import os
import time

from engine.jobctx import JobContext
from store.errors import TunedeckError
from store.payloads import SelftestConfig


def run_selftest(ctx: JobContext) -> None:
    cfg = ctx.config_as(SelftestConfig)
    steps = cfg.steps
    pause = cfg.seconds / max(steps, 1)
    fail_at = cfg.fail_at
    for step in range(1, steps + 1):
        ctx.check_cancel()
        time.sleep(pause)
        if fail_at is not None and step == fail_at:
            raise TunedeckError(f"selftest failed at step {step} as asked")
        ctx.progress(step / steps, step=step, total=steps, force=True)
    if cfg.report_env:
        ctx.set_result(env={name: os.environ.get(name) for name in cfg.report_env})
    ctx.set_result(steps=steps)
    ctx.log(f"selftest done after {steps} steps")
