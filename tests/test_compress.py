"""GPTQ and AWQ (W4A16, compressed-tensors) through llm-compressor, as `compress` jobs run through the CLI on the
demo model, on the CPU. llm-compressor runs in its own environment (engine/compress/toolenv.py), built once per
machine into the cache (`make test` does it in scripts/test_deps.sh; otherwise the first test here does, ~3 min)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_home, processes_with, run_cli, wait_job

GROUP = "32"  # the demo's hidden size is 64: the default group of 128 does not divide it (refused below)


@pytest.fixture(scope="session")
def compressor_python() -> Path:
    """The machine's llm-compressor environment for this tunedeck environment, built on first use."""
    from engine.compress.toolenv import _python, build_toolenv, cache_dir, is_ready

    dest = cache_dir()
    return _python(dest) if is_ready(dest) else build_toolenv(dest)


@pytest.fixture(scope="module")
def compress_home(demo_home_src: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_home(demo_home_src, tmp_path_factory.mktemp("compress-home") / "home")


def _env(python: Path) -> dict[str, str]:
    return {"TUNEDECK_COMPRESSOR_PYTHON": str(python), "OMP_NUM_THREADS": "1"}


def _compress(home: Path, python: Path, method: str, *extra: str) -> dict[str, Any]:
    proc = run_cli("compress", "demo-llama", "--method", method, "--group-size", GROUP, "--calibration", "demo",
                   *extra, "--wait", "--json", home=home, env=_env(python), timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(proc.stdout)


def _artifact(home: Path, artifact_id: int) -> dict[str, Any]:
    proc = run_cli("artifact", "show", str(artifact_id), "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _check_w4a16(folder: Path, group_size: int) -> None:
    """config.json says compressed-tensors, 4-bit int weights in groups, activations untouched, and the weights
    on disk are packed (int32 words holding eight 4-bit values) with their scales."""
    from safetensors import safe_open

    config = json.loads((folder / "config.json").read_text())["quantization_config"]
    assert config["quant_method"] == "compressed-tensors"
    assert config["format"] == "pack-quantized"
    (group,) = config["config_groups"].values()
    assert group["input_activations"] is None  # A16
    weights = group["weights"]
    assert (weights["num_bits"], weights["type"], weights["strategy"], weights["group_size"], weights["symmetric"]) \
        == (4, "int", "group", group_size, True)
    assert config["ignore"] == ["lm_head"]
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
        packed = f.get_tensor("model.layers.0.mlp.down_proj.weight_packed")
    assert "model.layers.0.self_attn.q_proj.weight_scale" in keys
    assert "model.layers.0.mlp.down_proj.weight" not in keys
    assert str(packed.dtype) == "torch.int32" and tuple(packed.shape) == (64, 128 // 8)


def _loads_back(python: Path, folder: Path) -> None:
    """A fresh process of llm-compressor's environment loads the folder with transformers (compressed-tensors
    decompresses it) and generates."""
    code = ("import sys, torch; from transformers import AutoModelForCausalLM as M, AutoTokenizer as T;"
            "m = M.from_pretrained(sys.argv[1]); t = T.from_pretrained(sys.argv[1]);"
            "out = m.generate(**t('red fox', return_tensors='pt'), max_new_tokens=4, do_sample=False);"
            "print(type(m).__name__, m.config.quantization_config.quant_method.value, out.shape[1])")
    proc = subprocess.run([str(python), "-c", code, str(folder)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    name, method, length = proc.stdout.split()[-3:]
    assert (name, method) == ("LlamaForCausalLM", "compressed-tensors") and int(length) > 2


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first use on a machine builds llm-compressor's environment
def test_gptq_job_registers_a_w4a16_artifact_with_its_perplexity_check(
        compress_home: Path, compressor_python: Path) -> None:
    job = _compress(compress_home, compressor_python, "gptq", "--samples", "32", "--max-length", "64")
    assert job["status"] == "completed", job
    result = job["result"]
    artifact = _artifact(compress_home, result["artifact_id"])
    assert artifact["kind"] == "compressed" and artifact["lineage"][0]["name"] == "demo-llama"
    folder = Path(artifact["path"])
    assert folder.parent.name == "output" and not list(folder.parent.glob(".*partial"))
    _check_w4a16(folder, int(GROUP))
    meta = artifact["meta"]
    assert (meta["format"], meta["method"], meta["scheme"]) == ("compressed-tensors", "gptq", "W4A16")
    assert meta["calibration"] == {"dataset_id": meta["calibration"]["dataset_id"], "dataset": "demo", "rows": 32,
                                   "max_length": 64}
    check = meta["fidelity"]["quant"]
    assert check["parent_perplexity"] > 1 and check["perplexity"] > 1 and check["tokens"] > 100
    assert check["delta"] == pytest.approx(check["perplexity"] / check["parent_perplexity"] - 1, abs=1e-3)
    assert (check["limit"], check["warn_limit"]) == (0.2194, 0.4388)  # 3 x GPTQ's published +7.3%
    assert meta["fidelity"]["status"] == check["status"] == result["fidelity"]
    assert "val split" in check["held_out"]
    assert meta["seconds"]["reload"] > 0  # the worker loaded the saved folder back to score it
    log = run_cli("job", "logs", str(job["id"]), home=compress_home).stdout
    assert f"pass up to +{check['limit']:.1%}" in log and "loaded back from disk" in log
    _loads_back(compressor_python, folder)

    serve = json.loads(run_cli("artifact", "serve", str(result["artifact_id"]), "--json",
                               home=compress_home).stdout)
    assert serve["commands"] == [
        f"vllm serve {folder} --quantization compressed-tensors --served-model-name {artifact['name']}",
        f"text-generation-launcher --model-id {folder} --quantize compressed-tensors"]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the first use on a machine builds llm-compressor's environment
def test_awq_job_on_the_cpu(compress_home: Path, compressor_python: Path) -> None:
    job = _compress(compress_home, compressor_python, "awq", "--samples", "8", "--max-length", "32",
                    "--name", "demo-awq")
    assert job["status"] == "completed", job
    artifact = _artifact(compress_home, job["result"]["artifact_id"])
    assert artifact["name"] == "demo-awq" and artifact["meta"]["method"] == "awq"
    _check_w4a16(Path(artifact["path"]), int(GROUP))
    check = artifact["meta"]["fidelity"]["quant"]
    assert check["delta"] is not None
    assert (check["limit"], check["warn_limit"]) == (0.0713, 0.1426)  # 3 x AWQ's published +2.4%


def test_refusals_name_what_is_wrong_and_queue_nothing(demo_home_src: Path, tmp_path: Path) -> None:
    from engine.artifacts import register_artifact
    from engine.compress.queue import queue_compress
    from store.db import open_store
    from store.errors import TunedeckError
    from store.projects import get_project

    home = copy_home(demo_home_src, tmp_path / "home")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "x", "r": 8}')
    store = open_store(home)
    with store.write() as session:
        adapter_id = register_artifact(session, get_project(session, "demo").id, "adapter", adapter,
                                       name="an-adapter").id

    def refused(ref: str, **kwargs: Any) -> str:
        with pytest.raises(TunedeckError) as info:
            queue_compress(store, ref, start=False, **{"method": "gptq", **kwargs})
        return str(info.value)

    assert "--method 'hqq': expected one of gptq, awq" in refused("demo-llama", method="hqq")
    assert "--scheme 'W8A8': expected one of W4A16" in refused("demo-llama", scheme="W8A8")
    msg = refused("demo-llama", method="awq", calibration="demo")  # the default group size, 128
    assert "config.json: group size 128 does not divide hidden_size 64" in msg and "--group-size 64" in msg
    assert "--group-size 48: expected one of 32, 64, 128" in refused("demo-llama", group_size=48)
    msg = refused("demo-llama", group_size=32)
    assert "was not trained on a dataset of this project: name the calibration data with --calibration" in msg
    assert "no dataset named 'nope'" in refused("demo-llama", group_size=32, calibration="nope")
    assert "--samples 0" in refused("demo-llama", samples=0)
    store.close()

    proc = run_cli("compress", str(adapter_id), "--method", "gptq", home=home)  # through the command line
    assert proc.returncode == 1
    assert f"artifact {adapter_id} is a LoRA adapter: merge it into its base first" in proc.stderr
    jobs = json.loads(run_cli("job", "list", "demo", "--json", home=home).stdout)
    assert not [j for j in jobs if j["kind"] == "compress"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_cancel_stops_the_worker_and_leaves_no_folder(compress_home: Path, compressor_python: Path) -> None:
    import time

    # AWQ's grid search keeps the worker busy for a while after it has scored the parent: the cancel lands there
    proc = run_cli("compress", "demo-llama", "--method", "awq", "--group-size", GROUP, "--calibration", "demo",
                   "--samples", "32", "--max-length", "64", "--name", "cancelled", "--json", home=compress_home,
                   env=_env(compressor_python))
    job_id = json.loads(proc.stdout)["job_id"]
    log = compress_home / "jobs" / str(job_id) / "job.log"
    deadline = time.monotonic() + 600
    while "parent perplexity" not in (log.read_text() if log.is_file() else ""):  # the worker is running
        assert time.monotonic() < deadline, log.read_text() if log.is_file() else "no log"
        time.sleep(0.5)
    assert run_cli("job", "cancel", str(job_id), home=compress_home).returncode == 0
    wait_job(compress_home, job_id, timeout=max(1.0, deadline - time.monotonic()))
    job = json.loads(run_cli("job", "show", str(job_id), "--json", home=compress_home).stdout)
    assert job["status"] == "cancelled", job
    output = compress_home / "jobs" / str(job_id) / "output"
    assert not output.exists() or not list(output.iterdir())  # neither the folder nor its .partial
    from engine.compress.job import WORKER

    assert not processes_with(str(WORKER), str(log.parent / "compress" / "spec.json"))


def test_tools_fetch_compressor_names_the_environment(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text("")
    proc = run_cli("tools", "fetch", "compressor", home=tmp_path / "home",
                   env={"TUNEDECK_COMPRESSOR_PYTHON": str(fake)})
    assert proc.returncode == 0 and proc.stdout.strip() == str(fake), proc.stderr
    proc = run_cli("tools", "fetch", "compressor", home=tmp_path / "home",
                   env={"TUNEDECK_COMPRESSOR_PYTHON": str(tmp_path / "nope")})
    assert proc.returncode == 1 and f"TUNEDECK_COMPRESSOR_PYTHON={tmp_path / 'nope'}: no such file" in proc.stderr
