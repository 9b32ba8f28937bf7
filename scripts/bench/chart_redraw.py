"""How long a chart of a long run takes to redraw: tunedeck's MetricChart (min/max per pixel column, then
textual-plot) against handing textual-plot every raw point, in the same run, at 80x24.

    python scripts/bench/chart_redraw.py [--points 100000] [--repeat 15]

Prints the median and worst redraw time of each (the series prepared and drawn onto the plot's canvas,
what a new poll or a resize costs) and the ratio. The goal is under 50 ms for 100,000 points.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from textual.app import App, ComposeResult
from textual_plot import HiResMode

from tui.widgets.metric_chart import MetricChart, Plot


def loss_curve(n: int, seed: int = 0) -> list[tuple[int, float]]:
    rng = random.Random(seed)
    return [(s, 2.5 * math.exp(-s / (n / 5)) + 0.3 + rng.uniform(-0.15, 0.15)) for s in range(1, n + 1)]


class Bench(App[None]):
    def compose(self) -> ComposeResult:
        yield MetricChart("loss", [("loss", "train"), ("eval_loss", "eval")], id="chart")


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


async def measure(points: int, repeat: int) -> dict[str, list[float]]:
    app = Bench()
    train = loss_curve(points)
    evals = [(s, v + 0.1) for s, v in train[:: max(1, points // 200)]]
    async with app.run_test(size=(80, 24)) as pilot:
        chart = app.query_one(MetricChart)
        chart.extend(train, "loss", redraw=False)
        chart.extend(evals, "eval_loss", redraw=False)
        await pilot.pause()
        plot = chart.query_one(Plot)

        def ours() -> None:
            chart.redraw()
            plot._render_plot()  # what the next frame does: draw the datasets, axes and ticks onto the canvas

        def raw() -> None:
            plot.clear()
            for series in chart.series.values():
                x = np.asarray(series.steps, dtype=float)
                y = np.asarray(series.values, dtype=float)
                plot.plot(x, y, line_style=series.style, hires_mode=HiResMode.BRAILLE)
            plot._render_plot()

        results = {"downsampled": timed(ours, repeat), "raw points": timed(raw, max(3, repeat // 5))}
        chart.set_view(smoothing=True, log_scale=True)
        results["downsampled, smoothed + log"] = timed(ours, repeat)
        return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    results = asyncio.run(measure(args.points, args.repeat))
    print(f"chart redraw at 80x24, {args.points:,} train-loss points + {min(args.points, 200):,} eval points")
    for name, times in results.items():
        print(f"  {name:<28} median {statistics.median(times):8.1f} ms   worst {max(times):8.1f} ms")
    ratio = statistics.median(results["raw points"]) / statistics.median(results["downsampled"])
    verdict = "ok" if statistics.median(results["downsampled"]) < 50 else "OVER the 50 ms goal"
    print(f"  raw / downsampled: {ratio:.0f}x · goal < 50 ms: {verdict}")


if __name__ == "__main__":
    main()
