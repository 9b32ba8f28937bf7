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


def _missing(rows: list[dict[str, Any]], keys: set[str]) -> list[Any]:
    return [r.get("id") for r in rows if not keys <= set(r)]


def preference_rows(rows: list[dict[str, Any]], objective: str) -> list[dict[str, Any]]:
    """Preference rows as TRL's conversational prompt/chosen/rejected (DPO, ORPO, reward model)."""
    if bad := _missing(rows, {"prompt", "chosen", "rejected"}):
        raise TunedeckError(f"{objective.upper()} needs a preference dataset (prompt, chosen, rejected); rows "
                            f"{bad[:5]} are not")
    return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows]


def kto_rows(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Rows as TRL's unpaired prompt/completion/label: kto rows as they are, a preference pair unpaired into its
    chosen answer (label true) and its rejected one (label false). Shuffled with `seed`: TRL's KTO reads them in
    order and estimates its KL term from the other rows of each batch."""
    import random

    out: list[dict[str, Any]] = []
    for r in rows:
        if {"prompt", "completion", "label"} <= set(r):
            if not isinstance(r["label"], bool):
                raise TunedeckError(f"KTO: row {r.get('id')}: label must be true or false, got {r['label']!r}")
            out.append({"prompt": r["prompt"], "completion": r["completion"], "label": r["label"]})
        elif {"prompt", "chosen", "rejected"} <= set(r):
            out.append({"prompt": r["prompt"], "completion": r["chosen"], "label": True})
            out.append({"prompt": r["prompt"], "completion": r["rejected"], "label": False})
        else:
            raise TunedeckError(f"KTO needs rows with prompt, completion and label, or preference pairs; row "
                                f"{r.get('id')} has {', '.join(sorted(r))}")
    random.Random(seed).shuffle(out)
    return out


def _last_assistant(messages: list[dict[str, Any]]) -> int | None:
    return next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "assistant"), None)


def prompt_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as GRPO prompts: {"prompt": [msgs], "answer": str, ...}. A chat is cut before its last assistant turn,
    whose text becomes `answer`; a preference pair's answer is its chosen reply, a kto row's its completion when
    labelled good. Other scalar fields of a row are passed along (reward functions receive them by name)."""
    out: list[dict[str, Any]] = []
    for r in rows:
        extra = {k: v for k, v in r.items() if k not in {"id", "prompt", "messages", "chosen", "rejected",
                                                          "completion", "label", "tools", "text"}
                 and isinstance(v, str | int | float | bool)}
        if "messages" in r:
            messages = r["messages"]
            cut = _last_assistant(messages)
            prompt = messages[:cut] if cut is not None else messages
            answer = messages[cut]["content"] if cut is not None else ""
        elif "prompt" in r:
            prompt = r["prompt"]
            reply = r.get("chosen") or (r.get("completion") if r.get("label", True) else None) or []
            answer = "".join(str(m.get("content", "")) for m in reply if m.get("role") == "assistant")
        else:
            raise TunedeckError(f"GRPO needs prompts; row {r.get('id')} has {', '.join(sorted(r))}")
        if not prompt:
            continue
        out.append({"prompt": prompt, "answer": str(answer), **extra})
    if not out:
        raise TunedeckError("GRPO: no row of the dataset holds a prompt")
    return out
