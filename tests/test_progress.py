"""The ETA: a smoothed time per step, fed a synthetic stream of steps with noise, stays stable step to step
where the last interval alone (what the engine's `eta_s` metric is) jumps around."""

from __future__ import annotations

import itertools
import random

from core.progress import EtaEstimator, ProgressView, eta_text, job_estimator, observe_job

STEPS = 600
STEP_S = 2.0


def steady_run(seed: int) -> list[tuple[float, int]]:
    """(time, step) at every step of a steady run: 2 s steps with +-40% noise, an evaluation pause (6x a
    step) every 50 steps and a checkpoint save (4x) every 100, as a real run's log shows."""
    rng = random.Random(seed)
    t, points = 0.0, [(0.0, 0)]
    for step in range(1, STEPS + 1):
        t += STEP_S * rng.uniform(0.6, 1.4)
        if step % 50 == 0:
            t += 6 * STEP_S
        if step % 100 == 0:
            t += 4 * STEP_S
        points.append((t, step))
    return points


def worst_ratio(etas: list[tuple[int, float]]) -> float:
    """The largest step-to-step change of the ETA, as |eta[k+1] / eta[k] - 1|, while 10+ steps remain."""
    worst = 0.0
    for (s0, e0), (_, e1) in itertools.pairwise(etas):
        if STEPS - s0 >= 10 and e0 > 0:
            worst = max(worst, abs(e1 / e0 - 1))
    return worst


def test_eta_is_stable_step_to_step_on_a_steady_noisy_run() -> None:
    for seed in range(5):
        points = steady_run(seed)
        est = EtaEstimator()
        smoothed: list[tuple[int, float]] = []
        raw: list[tuple[int, float]] = []
        for (t0, _), (t, step) in itertools.pairwise(points):
            est.observe(t, step, STEPS)
            if step > 5:  # past the warm-up
                smoothed.append((step, est.eta()))
                raw.append((step, (t - t0) * (STEPS - step)))  # the last interval alone
        smooth_worst, raw_worst = worst_ratio(smoothed), worst_ratio(raw)
        print(f"seed {seed}: worst step-to-step ETA change {smooth_worst:.1%} smoothed, {raw_worst:.1%} raw")
        assert smooth_worst <= 0.20, (seed, smooth_worst)
        assert raw_worst > 0.5  # the stream is noisy enough that the bound means something
        # And it is right: halfway, the ETA is within 20% of the time the run really took to finish.
        half = STEPS // 2
        true_left = points[-1][0] - points[half][0]
        est_half = next(e for s, e in smoothed if s == half)
        assert abs(est_half / true_left - 1) < 0.2, (seed, est_half, true_left)


def test_polling_rarely_gives_about_the_same_estimate_as_every_step() -> None:
    points = steady_run(7)
    every, sparse = EtaEstimator(), EtaEstimator()
    ratios = []
    for i, (t, step) in enumerate(points):
        every.observe(t, step, STEPS)
        if i % 5 == 0:
            sparse.observe(t, step, STEPS)
            if step > 20:
                ratios.append(sparse.per_unit / every.per_unit)
    assert abs(sum(ratios) / len(ratios) - 1) < 0.1
    assert 0.8 * STEP_S < every.per_unit < 1.6 * STEP_S  # about a step, pauses included


def test_counts_down_between_observations_and_starts_over_on_a_retry() -> None:
    est = EtaEstimator(warmup=1)
    assert est.eta() is None
    est.observe(100.0, 0, 10)
    assert est.eta() is None  # one point: no rate yet
    est.observe(102.0, 1, 10)
    assert est.eta() == 18.0
    assert est.eta(now=107.0) == 13.0 and est.eta(now=200.0) == 0.0
    est.observe(103.0, 1, 10)  # no new step: nothing changes
    assert est.eta() == 18.0
    est.observe(110.0, 0, 10)  # the steps went back: a retry starts over
    assert est.per_unit is None and est.eta() is None


def test_fraction_jobs_and_the_progress_line() -> None:
    est = job_estimator(None)
    observe_job(est, 0, None, 0.0, 10.0)
    observe_job(est, 0, None, 0.25, 20.0)  # 25% in 10 s
    assert abs(est.eta() - 30.0) < 1e-9
    observe_job(est, 3, 10, 0.3, 30.0)  # it now counts steps: the estimate restarts in steps
    assert est.unit == 1.0 and est.eta() is None
    view = ProgressView("run 7", "running", step=40, total=200, fraction=0.2, loss=1.23456, tokens_per_s=312.4,
                        eta_s=192)  # fmt: skip
    assert view.line() == "run 7 running · step 40/200 20% · loss 1.235 · 312 tok/s · ETA 3m12s"
    assert ProgressView("convert 3", "running", fraction=0.4).line() == "convert 3 running · 40% · ETA -"
    assert ProgressView("run 7", "queued").line() == "run 7 queued"
    assert eta_text(3900) == "1h05m"


# ----------------------------------------------------------------------------- --wait, against a real runner


def _selftest_job(store, steps: int, seconds: float) -> int:
    from engine.launch import start_runner
    from store.jobs import create_job
    from store.projects import create_project

    with store.write() as session:
        pid = create_project(session, "p").id
        job_id = create_job(session, pid, "selftest", {"steps": steps, "seconds": seconds}, slot="wait").id
    start_runner(store.home, "wait")
    return job_id


def test_wait_prints_plain_periodic_lines_without_a_terminal(store, capsys, monkeypatch) -> None:
    from cli import job as jobs

    monkeypatch.setattr(jobs, "PLAIN_EVERY_S", 0.5)
    job_id = _selftest_job(store, steps=10, seconds=4.0)
    job = jobs.wait_for_job(store, job_id, f"job {job_id}", show_progress=True)
    assert job.status == "completed"
    lines = capsys.readouterr().err.splitlines()
    running = [line for line in lines if " running · step " in line]  # (before step 1 it has no total yet)
    assert len(running) >= 3, lines
    assert "\r" not in "".join(lines) and "\x1b" not in "".join(lines)
    assert all(line.startswith(f"job {job_id} running · step ") and "/10 " in line for line in running)
    assert any("ETA " in line and "ETA -" not in line for line in running), running
    steps = [int(line.split("step ")[1].split("/")[0]) for line in running]
    assert steps == sorted(steps) and steps[-1] > steps[0]


class _Tty:
    """A stderr that says it is a terminal and keeps what is written to it."""

    def __init__(self) -> None:
        self.text = ""

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass


def test_wait_rewrites_one_line_on_a_terminal(store, monkeypatch) -> None:
    from cli import job as jobs

    tty = _Tty()
    monkeypatch.setattr("sys.stderr", tty)
    job_id = _selftest_job(store, steps=6, seconds=3.0)
    assert jobs.wait_for_job(store, job_id, f"job {job_id}", show_progress=True).status == "completed"
    assert "\n" not in tty.text  # one line, rewritten in place, then cleared
    frames = [f.removesuffix("\x1b[K") for f in tty.text.split("\r") if f.removesuffix("\x1b[K")]
    assert any("step " in f and "/6 " in f and "ETA " in f for f in frames), frames[-5:]
    assert tty.text.endswith("\r\x1b[K") and all(len(f) < 80 for f in frames)
