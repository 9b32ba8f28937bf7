"""Tests for engine.demo: the offline demo dataset and tiny model every later test uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.demo import (
    IM_END,
    IM_START,
    INSTRUCTION,
    WORDS,
    build_demo_model,
    demo_chat_messages,
    make_demo_examples,
    write_demo_dataset,
)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Another heavy job may share the 2 cores; one thread is faster then."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_model(tmp_path_factory.mktemp("demo") / "tiny-llama", seed=0)


@pytest.fixture(scope="module")
def tokenizer(demo_dir: Path):
    return transformers.AutoTokenizer.from_pretrained(demo_dir)


@pytest.fixture(scope="module")
def model(demo_dir: Path):
    return transformers.AutoModelForCausalLM.from_pretrained(demo_dir)


# --- dataset ---------------------------------------------------------------


def test_examples_deterministic_and_seed_dependent() -> None:
    a, b, c = make_demo_examples(400, 0), make_demo_examples(400, 0), make_demo_examples(400, 1)
    assert a == b
    assert a != c
    assert len(a) == 400
    assert len({r["input"] for r in a}) == 400  # no duplicate inputs


def test_examples_are_word_reversals() -> None:
    for row in make_demo_examples(200, 3):
        assert set(row) == {"instruction", "input", "output"}
        assert row["instruction"] == INSTRUCTION
        words = row["input"].split(" ")
        assert 2 <= len(words) <= 5
        assert set(words) <= set(WORDS)
        assert row["output"].split(" ") == words[::-1]


def test_write_dataset_jsonl(tmp_path: Path) -> None:
    path = write_demo_dataset(tmp_path / "sub" / "dir" / "demo.jsonl", n=50, seed=7)
    assert path == tmp_path / "sub" / "dir" / "demo.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == make_demo_examples(50, 7)
    assert [p.name for p in path.parent.iterdir()] == ["demo.jsonl"]  # no temp file left
    # Rewriting replaces the file whole.
    write_demo_dataset(path, n=10, seed=7)
    assert len(path.read_text(encoding="utf-8").splitlines()) == 10


def test_chat_messages() -> None:
    row = {"instruction": "Reverse the order of these words.", "input": "red fox", "output": "fox red"}
    assert demo_chat_messages(row) == [
        {"role": "user", "content": "Reverse the order of these words.\n\nred fox"},
        {"role": "assistant", "content": "fox red"},
    ]


# --- model and tokenizer ---------------------------------------------------


def test_model_dir_contents(demo_dir: Path) -> None:
    names = {p.name for p in demo_dir.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.model"} <= names
    assert {"tokenizer.json", "tokenizer_config.json"} <= names
    assert not [p for p in demo_dir.parent.iterdir() if p.name.startswith(".")]  # temp dir gone
    cfg = json.loads((demo_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    decoder = {v["content"]: v for v in cfg["added_tokens_decoder"].values()}
    assert decoder[IM_START]["special"] is True
    assert decoder[IM_END]["special"] is True


def test_vocab_and_special_tokens(demo_dir: Path, tokenizer, model) -> None:
    assert model.config.vocab_size == len(tokenizer)
    assert 256 < len(tokenizer) <= 520
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    start = tokenizer("<|im_start|>", add_special_tokens=False)["input_ids"]
    assert len(start) == 1
    assert start[0] == tokenizer.convert_tokens_to_ids(IM_START)
    assert IM_START in tokenizer.all_special_tokens
    assert IM_END in tokenizer.all_special_tokens
    end_id = tokenizer.convert_tokens_to_ids(IM_END)
    assert tokenizer.eos_token == IM_END
    assert tokenizer.pad_token is not None and tokenizer.pad_token_id != end_id
    eos = model.generation_config.eos_token_id
    assert end_id in (eos if isinstance(eos, list) else [eos])
    assert tokenizer.decode([*start, end_id], skip_special_tokens=True) == ""


def test_tokenizer_round_trip_and_matches_sentencepiece(demo_dir: Path, tokenizer) -> None:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(demo_dir / "tokenizer.model"))
    assert sp.get_piece_size() == len(tokenizer)
    texts = [r["instruction"] + "\n\n" + r["input"] for r in make_demo_examples(20, 5)]
    texts += ["Ünïcödé  text, 日本語 and emoji 🙂 (byte fallback)\n\ttabs"]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
        assert tokenizer.unk_token_id not in ids
        assert ids == sp.encode(text)  # what llama.cpp's sentencepiece vocab will see


def test_chat_template(tokenizer) -> None:
    row = make_demo_examples(1, 0)[0]
    text = tokenizer.apply_chat_template(demo_chat_messages(row), tokenize=False)
    assert text == (
        f"<|im_start|>user\n{INSTRUCTION}\n\n{row['input']}<|im_end|>\n"
        f"<|im_start|>assistant\n{row['output']}<|im_end|>\n"
    )
    prompt = tokenizer.apply_chat_template(demo_chat_messages(row)[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_forward_pass(tokenizer, model) -> None:
    enc = tokenizer(["red fox jumps", "the cat"], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**enc).logits
    assert logits.shape == (2, enc["input_ids"].shape[1], len(tokenizer))
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()


def test_second_build_refuses_and_keeps_first(demo_dir: Path) -> None:
    before = {p.name: p.read_bytes() for p in demo_dir.iterdir()}
    with pytest.raises(FileExistsError):
        build_demo_model(demo_dir, seed=1)
    assert {p.name: p.read_bytes() for p in demo_dir.iterdir()} == before
    assert sorted(p.name for p in demo_dir.parent.iterdir()) == [demo_dir.name]


def test_build_is_deterministic(demo_dir: Path, tmp_path: Path) -> None:
    again = build_demo_model(tmp_path / "again", seed=0)
    for name in ("tokenizer.model", "tokenizer.json", "model.safetensors", "config.json"):
        assert (again / name).read_bytes() == (demo_dir / name).read_bytes(), name


def test_the_cached_demo_model_is_the_built_one(demo_dir: Path, tmp_path: Path, monkeypatch) -> None:
    """`tunedeck demo` copies this machine's cached build: every file equals a fresh build's."""
    from engine.demo_project import demo_cache_dir, install_demo_model

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    first = install_demo_model(tmp_path / "a")  # builds into the (empty) cache, then copies
    assert (demo_cache_dir() / ".complete").is_file()
    second = install_demo_model(tmp_path / "b")  # copies
    names = sorted(p.name for p in demo_dir.iterdir())
    assert sorted(p.name for p in first.iterdir()) == names == sorted(p.name for p in second.iterdir())
    for name in names:
        assert (first / name).read_bytes() == (demo_dir / name).read_bytes() == (second / name).read_bytes(), name


def test_training_reduces_loss(tokenizer, model) -> None:
    """30 AdamW steps on 64 chat examples must clearly lower the loss."""
    torch.manual_seed(0)
    texts = [tokenizer.apply_chat_template(demo_chat_messages(r), tokenize=False) for r in make_demo_examples(64, 11)]
    enc = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    train_model = transformers.AutoModelForCausalLM.from_config(model.config)
    train_model.load_state_dict(model.state_dict())  # leave the shared fixture untouched
    train_model.train()
    opt = torch.optim.AdamW(train_model.parameters(), lr=3e-3)
    losses = []
    batch = 16
    for step in range(30):
        sl = slice((step * batch) % 64, (step * batch) % 64 + batch)
        out = train_model(input_ids=enc["input_ids"][sl], attention_mask=enc["attention_mask"][sl], labels=labels[sl])
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    first, last = losses[0], sum(losses[-3:]) / 3
    assert first > 5.0  # random init over a ~512 vocab: about ln(512) = 6.2
    assert last < 0.7 * first, losses
