"""Offline demo fixture: a tiny word-reversal dataset and a tiny Llama to fine-tune on it.

Everything here is built locally and deterministically, so tests (and the TUI's
demo mode) never need the Hugging Face hub. Heavy libraries (torch, transformers,
sentencepiece) are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

INSTRUCTION = "Reverse the order of these words."

# ~40 common short English words; the demo task is learnable from these alone.
WORDS: tuple[str, ...] = (
    "red", "blue", "green", "big", "small", "old", "new", "hot", "cold", "fast",
    "slow", "happy", "sad", "fox", "dog", "cat", "bird", "fish", "tree", "sun",
    "moon", "star", "sea", "hill", "road", "house", "book", "cup", "hat", "box",
    "jumps", "runs", "sits", "sees", "eats", "likes", "finds", "and", "the", "a",
)  # fmt: skip

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

TOKENIZER_VOCAB_SIZE = 512

# Extra plain English for the tokenizer corpus so the vocabulary is not only the
# demo words (byte fallback covers anything else).
_EXTRA_TEXT = (
    "You are a helpful assistant. The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? Please answer with one word.",
    "Write a short poem about the sea and the stars at night.",
    "Summarize the following text in one sentence, then explain why.",
    "user assistant system instruction input output response question answer",
    "Numbers 0 1 2 3 4 5 6 7 8 9 10 100 and punctuation: , . ; ! ? ( ) - ' \"",
)

MODEL_CONFIG: dict[str, int | bool] = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "tie_word_embeddings": True,
    "max_position_embeddings": 512,
}


def make_demo_examples(n: int = 400, seed: int = 0) -> list[dict]:
    """Return ``n`` alpaca rows of the word-reversal task, deterministic for ``seed``.

    Inputs are 2-5 distinct words from :data:`WORDS`; no input appears twice.
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = random.Random(seed)
    seen: set[str] = set()
    rows: list[dict] = []
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ValueError(f"cannot make {n} distinct examples")
        words = rng.sample(WORDS, rng.randint(2, 5))
        text = " ".join(words)
        if text in seen:
            continue
        seen.add(text)
        rows.append({"instruction": INSTRUCTION, "input": text, "output": " ".join(reversed(words))})
    return rows


def demo_chat_messages(example: dict) -> list[dict]:
    """Turn an alpaca row into a user/assistant chat."""
    return [
        {"role": "user", "content": example["instruction"] + "\n\n" + example["input"]},
        {"role": "assistant", "content": example["output"]},
    ]


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_demo_dataset(path: Path, n: int = 400, seed: int = 0) -> Path:
    """Write the demo examples to ``path`` as UTF-8 JSONL, atomically; return ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            for row in make_demo_examples(n, seed):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _train_sentencepiece(seed: int) -> bytes:
    """Train a small BPE sentencepiece model on the demo text; return its bytes."""
    import sentencepiece as spm

    lines: list[str] = list(_EXTRA_TEXT)
    lines.append(" ".join(WORDS))
    for row in make_demo_examples(400, seed):
        for msg in demo_chat_messages(row):  # the text as the ChatML template renders it
            lines.extend(f"{IM_START}{msg['role']}\n{msg['content']}{IM_END}".split("\n"))
    lines = [line for line in lines if line.strip()]

    spm.set_random_generator_seed(seed)
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        model_type="bpe",  # transformers 5's LlamaTokenizer is a BPE model
        vocab_size=TOKENIZER_VOCAB_SIZE,
        hard_vocab_limit=False,  # the corpus is small; take what it supports
        character_coverage=1.0,
        byte_fallback=True,
        # No dummy "▁" prefix and no normalization: HF (prepend_scheme "never") and
        # llama.cpp then tokenize text after a ChatML marker the same way.
        add_dummy_prefix=False,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        num_threads=1,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=3,
        unk_piece=UNK,
        bos_piece=BOS,
        eos_piece=EOS,
        pad_piece=PAD,
        user_defined_symbols=[IM_START, IM_END],
        minloglevel=2,
    )
    return buf.getvalue()


def _mark_special_tokens(tok_dir: Path) -> None:
    """Write ``added_tokens_decoder`` (so llama.cpp types the ChatML markers CONTROL) and explicit bos/eos flags."""
    from engine.tokenizer_files import write_added_tokens_decoder

    write_added_tokens_decoder(tok_dir)
    cfg_path = tok_dir / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    cfg["add_bos_token"] = False
    cfg["add_eos_token"] = False
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _build_into(out: Path, seed: int) -> None:
    import torch
    from tokenizers import AddedToken
    from transformers import (
        AutoTokenizer,
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        LlamaTokenizerFast,
    )

    # Tokenizer: load from a dir holding tokenizer.model (LlamaTokenizer(vocab_file=...)
    # silently yields a 3-token vocabulary in transformers 5).
    sp_bytes = _train_sentencepiece(seed)
    (out / "tokenizer.model").write_bytes(sp_bytes)
    tokenizer = LlamaTokenizerFast.from_pretrained(out, add_prefix_space=False, legacy=False)
    tokenizer.add_special_tokens(
        {
            "pad_token": PAD,
            "additional_special_tokens": [
                AddedToken(IM_START, special=True, normalized=False),
                AddedToken(IM_END, special=True, normalized=False),
            ],
        }
    )
    tokenizer.eos_token = IM_END  # generation stops at the end of the assistant turn
    tokenizer.chat_template = CHATML_TEMPLATE
    vocab_size = len(tokenizer)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (BOS, EOS, UNK, PAD, IM_START, IM_END)}
    if vocab_size < 256 or len(set(ids.values())) != 6 or ids[IM_END] >= vocab_size:
        raise RuntimeError(f"demo tokenizer looks wrong: size {vocab_size}, ids {ids}")

    config = LlamaConfig(
        **MODEL_CONFIG,
        vocab_size=vocab_size,
        bos_token_id=ids[BOS],
        eos_token_id=ids[IM_END],
        pad_token_id=ids[PAD],
        dtype="float32",
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    _pretrain(model, tokenizer, seed)
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BOS],
        eos_token_id=[ids[IM_END], ids[EOS]],
        pad_token_id=ids[PAD],
        do_sample=False,
    )
    from transformers.utils import logging as hf_logging

    bars_were_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Writing model shards" bar on stderr
    try:
        model.save_pretrained(out)
    finally:
        if bars_were_on:
            hf_logging.enable_progress_bar()
    tokenizer.save_pretrained(out)
    _mark_special_tokens(out)
    if not (out / "tokenizer.model").is_file():  # keep it for llama.cpp's converter
        (out / "tokenizer.model").write_bytes(sp_bytes)

    # Cheap self-check on what was written.
    tok = AutoTokenizer.from_pretrained(out)
    row = make_demo_examples(1, seed)[0]
    text = row["instruction"] + "\n\n" + row["input"]
    if tok.decode(tok(text, add_special_tokens=False)["input_ids"]) != text:
        raise RuntimeError("demo tokenizer does not round-trip")
    if len(tok) != vocab_size or tok.convert_tokens_to_ids(IM_START) != ids[IM_START]:
        raise RuntimeError("saved demo tokenizer differs from the built one")
    chat = tok.apply_chat_template(demo_chat_messages(row), tokenize=False)
    if not chat.startswith(IM_START + "user\n") or not chat.endswith(IM_END + "\n"):
        raise RuntimeError(f"unexpected chat rendering: {chat!r}")
    input_ids = torch.tensor([tok(chat, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
    if tuple(logits.shape) != (1, input_ids.shape[1], vocab_size) or not torch.isfinite(logits).all():
        raise RuntimeError(f"demo model forward pass failed: {tuple(logits.shape)}")


PRETRAIN_STEPS = 600
PRETRAIN_MAX_WORDS = 3


def _pretrain(model: Any, tokenizer: Any, seed: int, steps: int = PRETRAIN_STEPS) -> None:
    """Give the random model the base skill a real base model would have: reversing 2-3 words.

    From random weights no LoRA can learn anything in a few hundred steps (the frozen, tiny
    embeddings bound the logits). After this short full training (~10 s, one thread, seeded, so
    every build gives the same weights) the model knows the words, the chat format and short
    reversals, and a LoRA fine-tune on the demo data (2-5 words) measurably improves it.
    """
    import torch

    from engine.datasets.tokens import encode_chat

    rng = random.Random(seed + 1)
    examples = []
    for _ in range(3000):
        words = rng.sample(WORDS, rng.randint(2, PRETRAIN_MAX_WORDS))
        chat = [{"role": "user", "content": f"{INSTRUCTION}\n\n{' '.join(words)}"},
                {"role": "assistant", "content": " ".join(reversed(words))}]
        examples.append(encode_chat(tokenizer, chat))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
        model.train()
        for step in range(steps):
            batch = [examples[(step * 16 + k) % len(examples)] for k in range(16)]
            width = max(len(ids) for ids, _ in batch)
            input_ids = torch.tensor([ids + [0] * (width - len(ids)) for ids, _ in batch])
            attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch])
            labels = torch.tensor([[t if m else -100 for t, m in zip(ids, mask, strict=True)]
                                   + [-100] * (width - len(ids)) for ids, mask in batch])
            model(input_ids=input_ids, attention_mask=attention, labels=labels).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)


def build_demo_model(dest: Path, seed: int = 0) -> Path:
    """Build the tiny demo Llama + sentencepiece tokenizer into ``dest``; return ``dest``.

    Built in a temp dir beside ``dest`` and renamed into place, so ``dest`` is either
    absent or complete. Raises FileExistsError if ``dest`` exists already.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} exists already")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent))
    try:
        _build_into(tmp, seed)
        for f in tmp.iterdir():
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        _fsync_dir(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp made it 0700
        if dest.exists():
            raise FileExistsError(f"{dest} exists already")
        try:
            os.rename(tmp, dest)
        except OSError as e:  # dest appeared meanwhile (non-empty)
            raise FileExistsError(f"{dest} exists already") from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(dest.parent)
    return dest
