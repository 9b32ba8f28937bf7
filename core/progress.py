"""How far a job is and how long it has left: a smoothed ETA and the short text forms of progress.

Shared by the CLI's `--wait` line, the run and job screens and the Jobs screen. Standard library only,
so the CLI does not load Textual to print a progress line.

The ETA is the time per unit of work (a training step, or a percent of a job that reports a fraction)
smoothed by an exponential moving average, times the work left. Each new interval is first clipped to
between half and twice the average, so one slow step (an evaluation, a checkpoint save) or a burst of
fast ones moves the estimate by at most `alpha` (10%) per step: the ETA no longer jumps from 4m52s to
25s and back. The first `warmup` intervals are averaged plainly (no clipping) to find the level.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

EIGHTHS = " ▏▎▍▌▋▊▉"


def fmt_value(value: float | None, digits: int = 4) -> str:
    """A metric value in at most `digits` significant digits ("-" for none)."""
    if value is None:
        return "-"
    return f"{value:.{digits}g}"


def eta_text(seconds: float | None) -> str:
    """A duration as one or two units: 45s, 3m12s, 1h05m, 2d03h ("-" for none)."""
    if seconds is None or seconds < 0:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def progress_bar(fraction: float | None, width: int = 5) -> str:
    """`fraction` (0..1) as a bar of `width` cells in eighths of a cell, then the percentage: `███▌░ 70%`."""
    fraction = min(max(fraction or 0.0, 0.0), 1.0)
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    bar = "█" * full + (EIGHTHS[part] if part and full < width else "")
    return bar + "░" * (width - len(bar)) + f" {round(fraction * 100):>3d}%"


class EtaEstimator:
    """Seconds left for a job, from (time, work done) observations.

    `unit` is the size of one step of work in the `done` counts fed in: 1 for steps, 0.01 for a 0..1 fraction
    (a percent is a step). The average is updated once per unit, so polling often or rarely gives the same
    estimate. Work going backwards (a retried run) starts over.
    """

    def __init__(self, alpha: float = 0.1, unit: float = 1.0, warmup: int = 3, clip: float = 2.0) -> None:
        self.alpha = alpha
        self.unit = unit
        self.warmup = warmup
        self.clip = clip
        self.reset()

    def reset(self) -> None:
        self.per_unit: float | None = None  # smoothed seconds per unit of work
        self._last: tuple[float, float] | None = None  # (time, done) of the last observation that moved
        self._warm_time = 0.0
        self._warm_units = 0.0
        self._intervals = 0
        self.total: float | None = None
        self.done = 0.0
        self.at: float | None = None  # when the estimate was made

    def observe(self, t: float, done: float, total: float | None) -> None:
        """Record that `done` of `total` units of work were done at time `t` (seconds)."""
        self.total = total
        last = self._last
        if last is None or done < last[1]:
            if last is not None:
                self.reset()
                self.total = total
            self._last = (t, done)
            self.done, self.at = done, t
            return
        units = (done - last[1]) / self.unit
        dt = t - last[0]
        if units <= 0 or dt <= 0:
            return  # nothing new done: the estimate stands (and counts down as time passes)
        self._last = (t, done)
        self.done, self.at = done, t
        sample = dt / units
        self._intervals += 1
        if self.per_unit is None or self._intervals <= self.warmup:
            self._warm_time += dt
            self._warm_units += units
            self.per_unit = self._warm_time / self._warm_units
            return
        sample = min(max(sample, self.per_unit / self.clip), self.per_unit * self.clip)
        weight = 1.0 - (1.0 - self.alpha) ** units  # n units at once weigh as n single-unit updates
        self.per_unit += weight * (sample - self.per_unit)

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left as of `now` (default: the last observation's time); None until there is a rate and a total."""
        if self.per_unit is None or not self.total or self.at is None:
            return None
        left = max(0.0, self.total - self.done) / self.unit * self.per_unit
        if now is not None:
            left -= max(0.0, now - self.at)
        return max(0.0, left)


@dataclass
class ProgressView:
    """One job's progress as the CLI's `--wait` line shows it."""

    label: str
    status: str
    step: int = 0
    total: int | None = None
    fraction: float = 0.0
    loss: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None

    def line(self) -> str:
        """`run 7 running · step 40/200 20% · loss 1.234 · 312 tok/s · ETA 3m12s` (the parts it has)."""
        parts = [f"{self.label} {self.status}"]
        if self.total:
            parts.append(f"step {self.step}/{self.total} {round(self.fraction * 100)}%")
        elif self.status == "running":
            parts.append(f"{round(self.fraction * 100)}%")
        if self.loss is not None:
            parts.append(f"loss {fmt_value(self.loss)}")
        if self.tokens_per_s is not None:
            parts.append(f"{self.tokens_per_s:,.0f} tok/s")
        if self.status == "running":
            parts.append(f"ETA {eta_text(self.eta_s)}")
        return " · ".join(parts)


def job_estimator(total_steps: int | None) -> EtaEstimator:
    """An estimator for a job that counts steps (`total_steps` known) or reports a fraction."""
    return EtaEstimator(unit=1.0 if total_steps else 0.01)


def observe_job(est: EtaEstimator, step: int, total_steps: int | None, progress: float, at: float | None) -> None:
    """Feed a job row's progress (its step and total, else its fraction) written at `at` (its heartbeat)."""
    if total_steps:
        if est.unit != 1.0:
            est.unit = 1.0
            est.reset()
        est.observe(at or time.time(), float(step), float(total_steps))
    else:
        if est.unit != 0.01:
            est.unit = 0.01
            est.reset()
        est.observe(at or time.time(), float(progress or 0.0), 1.0)


def remaining_eta(eta_s: float | None, written_at: float | None, now: float | None = None) -> float | None:
    """The engine's ETA, less the time since it was written (it is written at each logging step)."""
    if eta_s is None:
        return None
    elapsed = max(0.0, (time.time() if now is None else now) - written_at) if written_at else 0.0
    return max(0.0, eta_s - elapsed)
