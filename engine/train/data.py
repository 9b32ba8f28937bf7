"""Turning a dataset snapshot into what TRL trains on.

SFT chats are tokenized here with the model's chat template and the same assistant mask the
lint report shows (`engine.datasets.tokens.encode_chat`), so the report's label mask is
exactly what the loss sees. DPO rows stay conversational; TRL applies the template.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from store.errors import TunedeckError


def read_split(folder: Path, split: str) -> list[dict[str, Any]]:
    """The rows of `train.jsonl` or `val.jsonl` of a snapshot."""
    path = folder / f"{split}.jsonl"
    try:
        with path.open(encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except OSError as exc:
        raise TunedeckError(f"cannot read the dataset snapshot {path}: {exc.strerror or exc}") from None


def sft_features(tokenizer: Any, rows: list[dict[str, Any]], max_length: int, assistant_only: bool) -> list[dict]:
    """input_ids (+ assistant_masks) per example, truncated to max_length; examples left with
    nothing to learn from after truncation are dropped (the lint report lists them as masked out)."""
    from engine.datasets.tokens import encode_chat, encode_segments

    out = []
    for row in rows:
        if "messages" in row:  # tools, when the row has them, rendered by the template (refused if it cannot)
            ids, mask = encode_chat(tokenizer, row["messages"], row.get("tools"))
        elif "segments" in row:
            ids, mask = encode_segments(tokenizer, row["segments"])
        else:
            ids = tokenizer(row["text"], add_special_tokens=True)["input_ids"]
            if tokenizer.eos_token_id is not None:
                ids = [*ids, tokenizer.eos_token_id]
            mask = [1] * len(ids)
        ids, mask = ids[:max_length], mask[:max_length]
        if not assistant_only:
            mask = [1] * len(ids)
        if any(mask):
            out.append({"input_ids": ids, "assistant_masks": mask})
    return out


def dpo_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Preference rows as TRL's conversational prompt/chosen/rejected."""
    bad = [r.get("id") for r in rows if not {"prompt", "chosen", "rejected"} <= set(r)]
    if bad:
        raise TunedeckError(f"DPO needs a preference dataset (prompt, chosen, rejected); rows {bad[:5]} are not")
    return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]
