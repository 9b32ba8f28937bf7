"""The texts evaluations run on: a dataset split rendered with the model's chat template, or general text."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# General prose, code and lists: what a fine-tune should not get worse at (the forgetting check).
GENERAL_TEXT = (
    "The river rises in the hills to the north and flows south through farmland for about two hundred miles "
    "before it reaches the sea. Towns grew up along its banks because the water was useful for mills, for "
    "transport and for drinking.",
    "When you write a letter to a friend, begin with a greeting, tell them your news, ask about theirs, and "
    "end with a warm closing. Short letters are fine; what matters is that you write.",
    "Photosynthesis is the process by which plants use sunlight, water and carbon dioxide to make sugar and "
    "oxygen. It takes place mostly in the leaves, inside small structures called chloroplasts.",
    "import json\n\ndef load(path):\n    with open(path) as fh:\n        return json.load(fh)\n\n"
    "def save(path, data):\n    with open(path, 'w') as fh:\n        json.dump(data, fh, indent=2)\n",
    "Shopping list: eggs, milk, bread, apples, rice, onions, tomatoes, olive oil, coffee, and soap.",
    "The meeting is moved to Thursday at three o'clock. Please bring the quarterly figures and the draft of the "
    "new schedule, and let me know if you cannot attend.",
)


Sequence = tuple[list[int], list[int]]  # token ids, and 1 where a token is scored


def read_rows(folder: Path, split: str, limit: int | None = 200) -> list[dict[str, Any]]:
    """The first `limit` rows of a dataset snapshot split (all of them when `limit` is None)."""
    path = folder / f"{split}.jsonl"
    if not path.is_file():
        raise FileNotFoundError(2, f"the dataset has no {split} split", str(path))
    rows = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def text_sequences(tokenizer: Any, texts: list[str] | tuple[str, ...]) -> list[Sequence]:
    """Plain texts as (BOS + ids, every token after BOS scored)."""
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    out = []
    for text in texts:
        ids = bos + list(tokenizer.encode(text, add_special_tokens=False))
        out.append((ids, [0] * len(bos) + [1] * (len(ids) - len(bos))))
    return out


def dataset_sequences(tokenizer: Any, rows: list[dict[str, Any]], max_length: int,
                      assistant_only: bool = True) -> list[Sequence]:
    """Dataset rows as the training run's features (`engine.train.data.sft_features`: the same chat rendering,
    assistant mask, EOS on text rows and truncation to `max_length`), preference rows by their chosen answer.
    Rows left with no scored prediction are dropped, as the trainer's loss never sees them either."""
    from engine.train.data import sft_features

    chats = [{"messages": [*r["prompt"], *r["chosen"]]} if "prompt" in r and "chosen" in r else r for r in rows]
    features = sft_features(tokenizer, chats, max_length, assistant_only)
    return [(f["input_ids"], f["assistant_masks"]) for f in features if any(f["assistant_masks"][1:])]


def row_sequences(tokenizer: Any, rows: list[dict[str, Any]]) -> list[Sequence]:
    """Dataset rows as the trainer sees them: chats through the chat template with only the assistant's
    tokens scored (the same mask the loss used), text rows whole, preference rows by their chosen answer."""
    from engine.datasets.tokens import encode_chat

    out: list[Sequence] = []
    for row in rows:
        if "prompt" in row and "chosen" in row:
            row = {"messages": [*row["prompt"], *row["chosen"]]}
        if "messages" in row and getattr(tokenizer, "chat_template", None):
            ids, mask = encode_chat(tokenizer, row["messages"])
            out.append((list(ids), list(mask)))
        elif text := render_row(row, tokenizer):
            out += text_sequences(tokenizer, [text])
    return [(ids, mask) for ids, mask in out if sum(mask[1:]) > 0]


def render_row(row: dict[str, Any], tokenizer: Any | None) -> str:
    """One normalized row as the text the model saw (chats through the chat template when there is one)."""
    if "prompt" in row and "chosen" in row:  # preference rows: the preferred conversation
        row = {"messages": [*row["prompt"], *row["chosen"]]}
    if "messages" in row:
        if tokenizer is not None and getattr(tokenizer, "chat_template", None):
            return str(tokenizer.apply_chat_template(row["messages"], tokenize=False))
        return "\n".join(f"{m['role']}: {m['content']}" for m in row["messages"])
    return str(row.get("text", ""))
