"""`tunedeck gpu` and `tunedeck estimate` as a user runs them: a subprocess on this machine (no NVIDIA
driver), JSON that parses, and refusals as one line on stderr with exit 1 (or 2 for a usage mistake)."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

from engine.gpu.calibrate import record_estimate, record_measured
from store.db import open_store
from store.models import Job, Project

LLAMA_3_8B = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
              "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256}  # fmt: skip


def model_dir(tmp_path: Path, config: dict, name: str = "m") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_gpu_without_a_driver_says_so_and_exits_0(home: Path) -> None:
    result = run_cli("gpu", home=home)
    assert result.returncode == 0, result.stderr
    assert "No NVIDIA driver found" in result.stdout and result.stderr == ""
    assert not home.exists()  # looking at GPUs never creates a tunedeck home


def test_gpu_json_is_a_valid_structure(home: Path) -> None:
    result = run_cli("gpu", "--json", home=home)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["available"] is False and data["gpus"] == [] and "NVIDIA" in data["message"]
    assert set(data) == {"available", "message", "driver_version", "gpus", "taken_at"}


def test_estimate_text_without_a_gpu(home: Path, tmp_path: Path) -> None:
    result = run_cli("estimate", "--model", str(model_dir(tmp_path, LLAMA_3_8B)), "--method", "qlora", home=home)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "llama, 8.03B parameters (arithmetic count)" in out
    for label in ("Base weights (NF4)", "LoRA adapters (r=16)", "Activations", "Logits", "Total"):
        assert label in out
    assert "Verdict: unknown" in out and "--gpu-memory" in out


def test_estimate_json_with_a_gpu_size_suggests_what_fits(home: Path, tmp_path: Path) -> None:
    folder = model_dir(tmp_path, LLAMA_3_8B)
    result = run_cli("estimate", "--model", str(folder), "--method", "qlora", "--batch", "8", "--max-length", "4096",
                     "--no-gradient-checkpointing", "--gpu-memory", "24", "--json", home=home)  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["config"] == str(folder / "config.json") and data["method"] == "qlora"
    assert data["verdict"] == "too big" and data["free_bytes"] == 24 * 1024**3
    assert data["total_bytes"] == sum(item["bytes"] for item in data["items"])
    assert data["settings"]["batch"] == 8 and not data["settings"]["gradient_checkpointing"]
    assert data["suggestions"] and all(s["total_bytes"] <= 0.9 * 24 * 1024**3 for s in data["suggestions"])
    assert set(data["weights_by_precision"]) == {"nf4", "int8", "bf16", "fp32"}

    text = run_cli("estimate", "--model", str(folder), "--method", "qlora", "--batch", "8", "--max-length", "4096",
                   "--no-gradient-checkpointing", "--gpu-memory", "24", home=home).stdout  # fmt: skip
    assert "Verdict: too big" in text and "Nearest settings that fit:" in text and "gradient checkpointing on" in text


def test_estimate_per_gpu_with_several_gpus(home: Path, tmp_path: Path) -> None:
    folder = model_dir(tmp_path, LLAMA_3_8B)
    args = ("estimate", "--model", str(folder), "--method", "full", "--gpu-memory", "80", "--json")
    one = json.loads(run_cli(*args, home=home).stdout)
    four = json.loads(run_cli(*args, "--gpus", "4", "--strategy", "fsdp", home=home).stdout)
    assert four["settings"]["gpus"] == 4 and four["settings"]["strategy"] == "fsdp"
    assert four["total_bytes"] < one["total_bytes"] / 2  # model state split four ways
    assert one["verdict"] == "too big" and four["verdict"] in ("fits", "tight")
    bad = run_cli("estimate", "--model", str(folder), "--strategy", "zero9", home=home)
    assert bad.returncode == 2 and "invalid choice: 'zero9'" in bad.stderr


def test_estimate_refusals(home: Path, tmp_path: Path) -> None:
    missing = run_cli("estimate", "--model", str(tmp_path / "nowhere"), home=home)
    assert missing.returncode == 1 and "no such model folder" in missing.stderr and missing.stdout == ""
    empty = tmp_path / "empty"
    empty.mkdir()
    no_config = run_cli("estimate", "--model", str(empty), home=home)
    assert no_config.returncode == 1 and "no config.json" in no_config.stderr
    gpt2 = model_dir(tmp_path, {"model_type": "gpt2", "n_embd": 768, "n_layer": 12, "vocab_size": 50257}, "gpt2")
    other = run_cli("estimate", "--model", str(gpt2), home=home)
    assert other.returncode == 1
    assert "model_type 'gpt2'" in other.stderr and "lacks hidden_size" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1  # one line, no traceback
    no_model = run_cli("estimate", home=home)
    assert no_model.returncode == 2 and "--model is required" in no_model.stderr
    bad_batch = run_cli("estimate", "--model", str(model_dir(tmp_path, LLAMA_3_8B)), "--batch", "0", home=home)
    assert bad_batch.returncode == 1 and "batch must be a positive integer" in bad_batch.stderr


def test_estimate_history_shows_estimates_against_measured(home: Path, tmp_path: Path) -> None:
    empty = run_cli("estimate", "--history", home=home)
    assert empty.returncode == 0 and "no run has recorded" in empty.stdout
    store = open_store(home)
    with store.write() as session:
        project = Project(name="p")
        session.add(project)
        session.flush()
        jobs = [Job(project_id=project.id, kind="train", name=f"run{i}", status="completed") for i in range(3)]
        session.add_all(jobs)
        session.flush()
        ids = [job.id for job in jobs]
    for job_id, measured in zip(ids, (11_000.0, 12_000.0, None), strict=True):
        record_estimate(store, job_id, {"model_type": "llama", "method": "qlora", "total_mb": 10_000.0,
                                        "settings": {"batch": 1, "max_length": 512}})  # fmt: skip
        if measured:
            record_measured(store, job_id, measured)
    store.close()
    result = run_cli("estimate", "--history", "--json", home=home)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    runs = {r["name"]: r for r in data["runs"]}
    assert runs["run0"]["error_pct"] == 10.0 and runs["run1"]["error_pct"] == 20.0
    assert runs["run2"]["measured_mb"] is None and data["factors"] == []  # 2 measured runs: no factor yet
    text = run_cli("estimate", "--history", home=home).stdout
    assert "+10.0%" in text and "run2" in text and "No correction factor yet" in text
