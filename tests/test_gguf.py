"""GGUF conversion and quantization with llama.cpp's own tools, and the fidelity checks, for real."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import copy_home, mount_tmpfs, run_cli


def _artifacts(home: Path, project: str = "demo") -> list[dict]:
    proc = run_cli("artifact", "list", project, "--json", home=home)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _generate(path: Path, lora: Path | None = None) -> str:
    import llama_cpp

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=128, n_threads=1, n_threads_batch=1, verbose=False,
                          lora_path=str(lora) if lora else None)
    out = llm.create_completion("reverse: red green", max_tokens=8, temperature=0, seed=1)
    return out["choices"][0]["text"], out["usage"]["completion_tokens"]


def test_sdist_unpacks_only_the_converter(tmp_path: Path, llama_sdist: Path) -> None:
    from engine.gguf.tools import unpack_sdist

    dest = unpack_sdist(llama_sdist, tmp_path / "tools")
    names = {p.name for p in dest.iterdir()}
    assert {"convert_hf_to_gguf.py", "convert_lora_to_gguf.py", "conversion", "gguf-py", "LICENSE"} <= names
    assert not (dest / "src").exists() and not (dest / "ggml").exists()  # the C++ sources stay out
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    assert size < 8_000_000


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory, llama_sdist: Path, demo_home_src: Path) -> Path:
    """One demo home for the conversion tests of this module (they run in order and build on each other)."""
    home = copy_home(demo_home_src, tmp_path_factory.mktemp("gguf") / "home")
    env = {"TUNEDECK_LLAMA_SDIST": str(llama_sdist), "HF_HUB_OFFLINE": "1"}
    assert run_cli("tools", "fetch", home=home, env=env).returncode == 0
    return home


def test_convert_and_quantize_demo_model(demo_home: Path) -> None:
    home = demo_home
    model = next(a for a in _artifacts(home) if a["kind"] == "model")
    proc = run_cli("convert", str(model["id"]), "--quant", "q8_0,q4_k_m", "--wait", "--json", home=home,
                   timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    job = json.loads(proc.stdout)
    assert job["status"] == "completed" and job["result"]["fidelity"] == "pass"
    ggufs = {a["name"]: a for a in _artifacts(home) if a["kind"] == "gguf"}
    assert set(ggufs) == {"demo-llama-f16.gguf", "demo-llama-q8_0.gguf", "demo-llama-q4_k_m.gguf"}
    f16 = ggufs["demo-llama-f16.gguf"]
    assert f16["parent_id"] == model["id"]
    fidelity = f16["meta"]["fidelity"]
    assert fidelity["status"] == "pass"
    assert fidelity["tokens"]["mismatched"] == 0
    assert fidelity["template"]["same_text"] and fidelity["template"]["template_in_gguf"]
    assert [c["conversation"] for c in fidelity["template"]["conversations"]] == ["with a system message",
                                                                                  "without one"]
    from engine.gguf.reader import read_metadata

    assert read_metadata(f16["path"]).name == "demo-llama"  # the artifact's name, not the converter's guess
    assert fidelity["agreement"]["top1_agreement"] >= 0.99 and fidelity["agreement"]["positions"] > 100
    for name in ("demo-llama-q8_0.gguf", "demo-llama-q4_k_m.gguf"):
        quant = ggufs[name]
        assert quant["parent_id"] == f16["id"]
        assert quant["meta"]["fidelity"]["quant"]["status"] == "pass"
        assert Path(quant["path"]).stat().st_size < Path(f16["path"]).stat().st_size
    # hidden size 64 is not a multiple of the k-quant block: llama.cpp falls back per tensor, and we say so
    report = ggufs["demo-llama-q4_k_m.gguf"]["meta"]["quantize"]
    assert report["fallback"] > 0 and "fallback" in report["note"]
    # the note names only the tensors that fell back (not the norms kept in F32 or the embedding)
    assert len(report["fallback_tensors"]) == report["fallback"]
    assert all("norm" not in name and name.startswith("blk.") for name in report["fallback_tensors"])
    assert "F32" not in report["note"] and "q4_k->q5_0" in report["note"]
    assert ggufs["demo-llama-q8_0.gguf"]["meta"]["quantize"]["fallback"] == 0
    check = ggufs["demo-llama-q8_0.gguf"]["meta"]["fidelity"]["quant"]
    assert (check["limit"], check["warn_limit"]) == (0.02, 0.04) and check["llama_cpp_increase"] == 0.00018
    from engine.gguf.quantize import tensor_types

    # the types taken from llama.cpp's log are the file's own
    assert report["tensor_types"] == tensor_types(Path(ggufs["demo-llama-q4_k_m.gguf"]["path"]))
    assert "Q4_K" not in report["tensor_types"] or report["tensor_types"]["Q4_K"] < report["n_tensors"]
    for a in ggufs.values():
        _text, n = _generate(Path(a["path"]))
        assert n > 0
    assert not list(home.rglob("*.partial"))
    shown = run_cli("artifact", "show", str(f16["id"]), home=home)
    assert "fidelity  pass" in shown.stdout and "agreement" in shown.stdout


def test_quantize_verb_and_bad_types(demo_home: Path) -> None:
    home = demo_home  # holds the f16 GGUF the test above made
    f16 = next(a for a in _artifacts(home) if a["name"] == "demo-llama-f16.gguf")
    bad = run_cli("quantize", str(f16["id"]), "--quant", "q4_k_m,q9_z", home=home)
    assert bad.returncode == 1 and "q9_z" in bad.stderr
    wrong_kind = run_cli("quantize", "1", "--quant", "q8_0", home=home)
    assert wrong_kind.returncode == 1 and "expected gguf" in wrong_kind.stderr
    ok = run_cli("quantize", str(f16["id"]), "--quant", "q6_k", "--wait", home=home, timeout=300)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    q6 = next(a for a in _artifacts(home) if a["name"].endswith("q6_k.gguf"))
    assert q6["meta"]["fidelity"]["quant"]["status"] in {"pass", "warn"}
    assert "q6_k" in ok.stdout and "(pass up to +2.0%, warn up to +4.0%; from llama.cpp's perplexity table)" \
        in ok.stdout


def test_quant_limits_follow_llama_cpps_table() -> None:
    from engine.gguf.fidelity import LLAMA_CPP_PPL_INCREASE, ppl_delta_limits

    order = ["q8_0", "q6_k", "q5_k_m", "q4_k_m", "q4_0", "q3_k_m", "q2_k"]  # the table's order, best first
    assert sorted(LLAMA_CPP_PPL_INCREASE, key=LLAMA_CPP_PPL_INCREASE.get) == order
    limits = [ppl_delta_limits(q) for q in order]
    assert all(a[0] <= b[0] and a[1] <= b[1] for a, b in itertools.pairwise(limits))
    assert all(ok < warn for ok, warn in limits)
    # measured on SmolLM2-135M-Instruct over the check's texts: q8_0 +1.03% and q4_k_m +3.51% both pass
    assert 0.0103 <= ppl_delta_limits("q8_0")[0] and 0.0351 <= ppl_delta_limits("q4_k_m")[0]
    assert ppl_delta_limits("q8_0")[0] < 0.0351  # q8_0 is held tighter than q4_k_m's measured change


def _bpe_model(folder: Path) -> Path:
    """A tiny Llama with a custom byte-level BPE tokenizer llama.cpp has never seen."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[0-9]"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    texts = ["the quick brown fox jumps over the lazy dog 12345"] * 20 + ["tunedeck converts models 42"] * 20
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=320, special_tokens=["<s>", "</s>"],
                                                       initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(str(folder))
    cfg = LlamaConfig(vocab_size=len(fast), hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=4, bos_token_id=0, eos_token_id=1)
    LlamaForCausalLM(cfg).save_pretrained(str(folder))
    return folder


def test_unknown_pre_tokenizer_is_explained_and_can_be_forced(tmp_path: Path, llama_sdist: Path) -> None:
    from engine.gguf.convert import ConversionError, convert_model
    from engine.gguf.tools import unpack_sdist

    tools = unpack_sdist(llama_sdist, tmp_path / "tools")
    model = _bpe_model(tmp_path / "bpe")
    out = tmp_path / "bpe.gguf"
    with pytest.raises(ConversionError, match="does not recognize this tokenizer's BPE pre-tokenizer") as err:
        convert_model(tools, model, out)
    assert "--pre-tokenizer" in str(err.value)
    assert not out.exists() and not list(tmp_path.glob("*.partial"))
    with pytest.raises(ConversionError, match=r"not one llama\.cpp knows"):
        convert_model(tools, model, out, pre_tokenizer="no-such-thing")
    convert_model(tools, model, out, pre_tokenizer="gpt-2")
    from engine.gguf.reader import read_metadata

    assert read_metadata(out).pre_tokenizer == "gpt-2"


def test_unknown_pre_tokenizer_fails_the_job_with_the_explanation(home: Path, tmp_path: Path,
                                                                   gguf_tools_env: Path) -> None:
    from engine.artifacts import register_artifact
    from store.db import open_store
    from store.projects import create_project

    model = _bpe_model(tmp_path / "bpe")
    store = open_store(home)
    with store.write() as session:
        project = create_project(session, "p")
        artifact_id = register_artifact(session, project.id, "model", model, name="bpe").id
    store.close()
    proc = run_cli("convert", str(artifact_id), "--wait", home=home, timeout=300)
    assert proc.returncode == 1
    assert "pre-tokenizer" in proc.stdout and "--pre-tokenizer NAME" in proc.stdout
    assert [a["kind"] for a in _artifacts(home, "p")] == ["model"]
    assert not list((home / "jobs").rglob("*.gguf*"))


def test_corrupt_model_fails_cleanly(home: Path, tmp_path: Path, demo_model_dir: Path,
                                     gguf_tools_env: Path) -> None:
    from engine.artifacts import register_artifact
    from store.db import open_store
    from store.projects import create_project

    broken = tmp_path / "broken"
    shutil.copytree(demo_model_dir, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    store = open_store(home)
    with store.write() as session:
        project = create_project(session, "p")
        artifact_id = register_artifact(session, project.id, "model", broken, name="broken").id
    store.close()
    proc = run_cli("convert", str(artifact_id), "--wait", home=home, timeout=300)
    assert proc.returncode == 1 and "conversion failed" in proc.stdout
    assert [a["kind"] for a in _artifacts(home, "p")] == ["model"]
    assert not list((home / "jobs").rglob("*.gguf*"))


def test_refusals_before_queueing(demo_home: Path) -> None:
    home = demo_home
    before = json.loads(run_cli("job", "list", "--json", home=home).stdout)
    data = next(a for a in _artifacts(home) if a["kind"] == "data")
    for args, message in [
        (("convert", str(data["id"])), "expected adapter or merged or model"),
        (("convert", "999"), "no artifact 999"),
        (("convert", "1", "--quant", "q4_k_z"), "unknown quant type q4_k_z"),
        (("convert", "1", "--outtype", "q8_0"), "invalid choice"),
    ]:
        proc = run_cli(*args, home=home)
        assert proc.returncode in (1, 2) and message in proc.stderr, (args, proc.stderr)
    assert json.loads(run_cli("job", "list", "--json", home=home).stdout) == before


def test_disk_full_during_conversion_and_quantize(tmp_path: Path, llama_sdist: Path, demo_model_dir: Path,
                                                  demo_gguf: Path) -> None:
    from engine.gguf.convert import DiskFull, convert_model
    from engine.gguf.quantize import quantize
    from engine.gguf.tools import unpack_sdist

    tools = unpack_sdist(llama_sdist, tmp_path / "tools")
    small = tmp_path / "small"
    if not mount_tmpfs(small, "100k"):
        pytest.skip("cannot mount a size-limited tmpfs here (needs root / CAP_SYS_ADMIN)")
    try:
        keep = small / "earlier.gguf"
        keep.write_bytes(b"GGUF" + b"\0" * 1000)
        with pytest.raises(DiskFull, match=r"disk full while writing .*demo-f32\.gguf"):
            convert_model(tools, demo_model_dir, small / "demo-f32.gguf", "f32")
        assert sorted(p.name for p in small.iterdir()) == ["earlier.gguf"]
        with pytest.raises(DiskFull, match="disk full"):
            quantize(demo_gguf, small / "demo-q8_0.gguf", "q8_0")
        assert sorted(p.name for p in small.iterdir()) == ["earlier.gguf"]
        assert keep.read_bytes().startswith(b"GGUF")
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_a_tokenizer_saved_without_added_tokens_decoder_still_converts_its_chat_markers(
        tmp_path: Path, demo_model_dir: Path, llama_sdist: Path) -> None:
    """transformers 5 drops added_tokens_decoder from tokenizer_config.json; without it llama.cpp would split
    <|im_start|> into pieces. The converter gets a view with it filled in; the model folder is not changed."""
    import llama_cpp

    from engine.gguf.convert import convert_model
    from engine.gguf.tools import unpack_sdist
    from engine.tokenizer_files import missing_added_tokens, write_added_tokens_decoder

    model = tmp_path / "saved-by-transformers5"
    shutil.copytree(demo_model_dir, model)
    config_path = model / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("added_tokens_decoder")
    config_path.write_text(json.dumps(config))
    before = config_path.read_bytes()
    assert missing_added_tokens(model)["4"]["content"] == "<|im_start|>"
    out = convert_model(unpack_sdist(llama_sdist, tmp_path / "tools"), model, tmp_path / "m.gguf")
    assert config_path.read_bytes() == before
    llm = llama_cpp.Llama(model_path=str(out), vocab_only=True, verbose=False)
    assert llm.tokenize(b"<|im_start|>", add_bos=False, special=True) == [4]
    assert write_added_tokens_decoder(model) and not missing_added_tokens(model)
    assert not write_added_tokens_decoder(model)
