"""The dataset formats, one normalizer each: a record's fields validated (every problem reported with its
field path) and turned into the normalized shape of ``types``. ``NORMALIZERS`` maps a format to its function;
:func:`engine.datasets.formats.normalize` is the entry point.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from engine.datasets.messages import (
    CHAT,
    MISSING,
    SHAREGPT,
    Problems,
    check_turns,
    empty,
    message,
    message_list,
    messages,
    optional_text,
    show,
    split_last_assistant,
    text,
    tools,
)
from engine.datasets.readers import kind


def _system_first(record: dict[str, Any], msgs: list[dict[str, Any]], errs: Problems) -> list[dict[str, Any]]:
    """A ``system`` column put in front of the messages (LLaMA-Factory, many exports)."""
    system = optional_text(record, "system", errs)
    if system is None:
        return msgs
    if msgs and msgs[0].get("role") == "system":
        errs.add("system", "both a system column and a system message (keep one)")
        return msgs
    return [{"role": "system", "content": system}, *msgs]


def _history(record: dict[str, Any], errs: Problems) -> list[dict[str, Any]]:
    """Alpaca's optional ``history``: earlier ``[instruction, answer]`` pairs, as turns."""
    errs.use("history")
    value = record.get("history")
    if empty(value):
        return []
    if not isinstance(value, list):
        errs.add("history", f"expected a list of [instruction, answer] pairs, got {kind(value)}")
        return []
    out: list[dict[str, Any]] = []
    for i, pair in enumerate(value):
        if not (isinstance(pair, list) and len(pair) == 2):
            errs.add(f"history[{i}]", f"expected an [instruction, answer] pair, got {show(pair)}")
            continue
        q, a = text(pair[0], f"history[{i}][0]", errs), text(pair[1], f"history[{i}][1]", errs)
        out += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return out


def _instruction_prompt(record: dict[str, Any], errs: Problems) -> list[dict[str, Any]] | None:
    """Alpaca's instruction (+ input, history, system) as the messages up to the answer."""
    errs.use("instruction", "input")
    instruction = text(record.get("instruction", MISSING), "instruction", errs)
    extra = optional_text(record, "input", errs)
    turns = _history(record, errs)
    if instruction is None:
        return None
    user = instruction if extra is None else f"{instruction}\n\n{extra}"
    return _system_first(record, [*turns, {"role": "user", "content": user}], errs)


def _alpaca(record: dict[str, Any], errs: Problems) -> dict[str, Any] | None:
    prompt = _instruction_prompt(record, errs)
    errs.use("output")
    output = text(record.get("output", MISSING), "output", errs)
    if prompt is None or output is None or errs.items:
        return None
    return {"messages": [*prompt, {"role": "assistant", "content": output}]}


def _with_tools(record: dict[str, Any], msgs: list[dict[str, Any]], errs: Problems) -> dict[str, Any] | None:
    schemas = tools(record, errs)
    if errs.items:
        return None
    return {"messages": msgs, "tools": schemas} if schemas else {"messages": msgs}


def _chat(record: dict[str, Any], errs: Problems) -> dict[str, Any] | None:
    errs.use("messages")
    msgs = messages(record.get("messages", MISSING), "messages", errs)
    if msgs is None:
        return None
    msgs = _system_first(record, msgs, errs)
    check_turns(msgs, "messages", errs)
    return _with_tools(record, msgs, errs)


def _sharegpt(record: dict[str, Any], errs: Problems) -> dict[str, Any] | None:
    errs.use("conversations")
    msgs = messages(record.get("conversations", MISSING), "conversations", errs, SHAREGPT)
    if msgs is None:
        return None
    msgs = _system_first(record, msgs, errs)
    check_turns(msgs, "conversations", errs, SHAREGPT)
    return _with_tools(record, msgs, errs)


_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant): ")


def transcript(value: str) -> list[dict[str, Any]] | None:
    """An HH-RLHF style transcript (``\\n\\nHuman: ...\\n\\nAssistant: ...``) as messages; None if it is not one."""
    body = value.lstrip("\n")
    if not body.startswith("Human: "):
        return None
    parts = _TURN.split(body)  # ["", "Human", text, "Assistant", text, ...]
    return [{"role": "user" if who == "Human" else "assistant", "content": said.strip()}
            for who, said in zip(parts[1::2], parts[2::2], strict=True)]


def _prompt_of(record: dict[str, Any], errs: Problems) -> list[dict[str, Any]] | bool | None:
    """The prompt of a preference or KTO record: from ``prompt`` (a string or messages), ``conversations``
    (LLaMA-Factory) or ``instruction`` (+input); False when the record has none of these."""
    if "prompt" in record:
        errs.use("prompt")
        value = record["prompt"]
        if isinstance(value, str):
            body = text(value, "prompt", errs)
            return None if body is None else _system_first(record, [{"role": "user", "content": body}], errs)
        msgs = messages(value, "prompt", errs, expected="a string or a list of messages")
        if msgs is not None:
            msgs = _system_first(record, msgs, errs)
            check_turns(msgs, "prompt", errs, prompt=True)
        return msgs
    if "conversations" in record:
        errs.use("conversations")
        msgs = messages(record["conversations"], "conversations", errs, SHAREGPT)
        if msgs is not None:
            msgs = _system_first(record, msgs, errs)
            check_turns(msgs, "conversations", errs, SHAREGPT, prompt=True)
        return msgs
    if "instruction" in record:
        return _instruction_prompt(record, errs)
    return False


def _response(record: dict[str, Any], key: str, errs: Problems, transcripts: bool) -> list[dict[str, Any]] | None:
    """A response field: a string (one assistant message, or with TRANSCRIPTS an HH-RLHF transcript), one
    message object (LLaMA-Factory's ``{"from": "gpt", "value": ...}``), or a list of messages."""
    errs.use(key)
    value = record.get(key, MISSING)
    if isinstance(value, str):
        turns = transcript(value) if transcripts else None
        if turns is not None:
            value = turns
        else:
            body = text(value, key, errs)
            return None if body is None else [{"role": "assistant", "content": body}]
    if isinstance(value, dict):
        style = SHAREGPT if "from" in value else CHAT
        return [message(value, key, errs, style, key)]
    style = SHAREGPT if isinstance(value, list) and value and isinstance(value[0], dict) and "from" in value[0] \
        else CHAT  # fmt: skip
    return messages(value, key, errs, style, expected="a string or a list of messages")


def _completion(msgs: list[dict[str, Any]], key: str, errs: Problems) -> tuple[list[dict], list[dict]] | None:
    """(what comes before, the completion) of a response: a whole conversation is split at its last assistant
    turn; assistant messages alone are all completion."""
    if any(m["role"] is None for m in msgs):
        return None
    if all(m["role"] == "assistant" for m in msgs):
        return [], msgs
    check_turns(msgs, key, errs)
    return split_last_assistant(msgs, key, errs)


def _same_prompt(given: list[dict[str, Any]], found: list[dict[str, Any]]) -> bool:
    """Whether a given prompt agrees with the conversation found before the completion (UltraFeedback gives the
    last user message as ``prompt`` and the whole conversation in chosen/rejected)."""
    if given == found:
        return True
    user = [m for m in given if m["role"] != "system"]
    return len(user) == 1 and bool(found) and found[-1]["role"] == "user" and \
        found[-1]["content"].strip() == user[0]["content"].strip()  # fmt: skip


def _preference(record: dict[str, Any], errs: Problems) -> dict[str, Any] | None:
    prompt = _prompt_of(record, errs)
    chosen = _response(record, "chosen", errs, transcripts=prompt is False)
    rejected = _response(record, "rejected", errs, transcripts=prompt is False)
    if chosen is None or rejected is None or prompt is None or errs.items:
        return None
    c_split, r_split = _completion(chosen, "chosen", errs), _completion(rejected, "rejected", errs)
    if c_split is None or r_split is None:
        return None
    (c_before, chosen), (r_before, rejected) = c_split, r_split
    if c_before != r_before:
        errs.add("rejected", "the conversation before the last assistant turn differs from chosen's "
                             "(expected a shared prompt)")
    elif c_before:
        if prompt is not False and not _same_prompt(prompt, c_before):
            errs.add("prompt", "differs from the conversation before chosen's last assistant turn")
        prompt = c_before
    elif prompt is False:
        errs.add("prompt", "missing (expected a string or a list of messages, or chosen/rejected conversations "
                           "that hold the prompt)")
    if chosen == rejected:
        errs.add("rejected", "identical to chosen (a preference pair needs two different responses)")
    if errs.items:
        return None
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _label(record: dict[str, Any], errs: Problems) -> bool | None:
    key = "kto_tag" if "kto_tag" in record else "label"
    errs.use(key)
    value = record.get(key, MISSING)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"  # CSV cells
    if isinstance(value, bool):
        return value
    got = "missing" if value is MISSING else f"got {kind(value)} {show(value)}"
    errs.add(key, f"expected true (a desirable completion) or false (an undesirable one), {got}")
    return None


def _kto(record: dict[str, Any], errs: Problems) -> dict[str, Any] | None:
    label = _label(record, errs)
    if "completion" in record:
        prompt = _prompt_of(record, errs)
        completion = _response(record, "completion", errs, transcripts=False)
        if prompt is False:
            errs.add("prompt", "missing (expected a string or a list of messages)")
        if prompt is None or prompt is False or completion is None or errs.items:
            return None
        split = _completion(completion, "completion", errs)
        if split is None:
            return None
        before, completion = split
        prompt = [*prompt, *before]
    else:
        key, style = ("messages", CHAT) if "messages" in record or "conversations" not in record \
            else ("conversations", SHAREGPT)  # fmt: skip
        errs.use(key)
        msgs = messages(record.get(key, MISSING), key, errs, style)
        if msgs is None or errs.items:
            return None
        msgs = _system_first(record, msgs, errs)
        check_turns(msgs, key, errs, style)
        split = None if errs.items else split_last_assistant(msgs, key, errs, style)
        if split is None:
            return None
        prompt, completion = split
    if errs.items or label is None:
        return None
    return {"prompt": prompt, "completion": completion, "label": label}


def _input_output(record: dict[str, Any], errs: Problems) -> dict[str, Any] | None:
    """axolotl's template-free layout: text segments, each trained on (label true) or not."""
    errs.use("segments")
    value = record.get("segments", MISSING)
    items = message_list(value, "segments", errs, "a list of segments")
    if items is None:
        return None
    out = []
    for i, seg in enumerate(items):
        where = f"segments[{i}]"
        if not isinstance(seg, dict):
            errs.add(where, f"expected an object with label and text, got {kind(seg)}")
            continue
        body = seg.get("text", MISSING)
        if not isinstance(body, str):
            errs.add(f"{where}.text", "missing (expected a string)" if body is MISSING else
                     f"expected a string, got {kind(body)}")  # fmt: skip
        label = seg.get("label", MISSING)
        if not isinstance(label, bool):
            errs.add(f"{where}.label", "expected true (trained on) or false (context only)")
        errs.unused.update(f"segments[].{k}" for k in seg if k not in ("text", "label") and not empty(seg[k]))
        out.append({"text": body, "label": label})
    if not errs.items and not any(s["label"] and s["text"].strip() for s in out):
        errs.add("segments", "no segment with label true to learn from")
    return None if errs.items else {"segments": out}


def _text_format(record: dict[str, Any], errs: Problems) -> dict[str, Any] | None:
    errs.use("text")
    body = text(record.get("text", MISSING), "text", errs)
    return None if body is None else {"text": body}


NORMALIZERS: dict[str, Callable[[dict[str, Any], Problems], dict[str, Any] | None]] = {
    "alpaca": _alpaca, "chat": _chat, "sharegpt": _sharegpt, "preference": _preference, "kto": _kto,
    "input_output": _input_output, "text": _text_format,
}
