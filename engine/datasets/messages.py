"""Validating and normalizing the parts records are made of: texts, content parts, messages, tool calls and
tool schemas. Every problem is noted with the field's path (``messages[2].role``) and what was expected;
every field a record carries that normalizing does not use is noted too, so the lint report can list it.

Normalized messages are ``{"role", "content"}`` (content a string), plus ``tool_calls`` on an assistant
message (OpenAI's shape, ``[{"type": "function", "function": {"name", "arguments": {...}}, "id"?}]``, the
arguments parsed to an object as chat templates expect) and ``tool_call_id`` / ``name`` on a tool message.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from engine.datasets.readers import kind
from engine.datasets.types import ROLES, Location, RecordError

MISSING: Any = object()
TEXT = "a non-empty string"
MEDIA_KEYS = ("images", "image", "videos", "video", "audios", "audio")
_MEDIA = frozenset(MEDIA_KEYS)
MEDIA_PARTS = ("image_url", "image", "input_image", "video", "video_url", "audio", "input_audio", "audio_url")


class Problems:
    """The problems of one record, and the fields it has that normalizing did not use."""

    __slots__ = ("items", "loc", "unused", "used")

    def __init__(self, loc: Location) -> None:
        self.loc = loc
        self.items: list[RecordError] = []
        self.used: set[str] = set()  # top-level keys read
        self.unused: set[str] = set()  # nested fields left out ("messages[].weight")

    def add(self, path: str, message: str) -> None:
        self.items.append(RecordError(self.loc, path, message))

    def use(self, *keys: str) -> None:
        self.used.update(keys)


def empty(value: Any) -> bool:
    """Whether a value holds nothing (None, blank string, empty list or object): leaving it out loses nothing."""
    return value is None or value == [] or value == {} or (isinstance(value, str) and not value.strip())


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def text(value: Any, path: str, errs: Problems) -> str | None:
    """VALUE if it is a non-empty string, else None with the problem noted."""
    if isinstance(value, str):
        if value and not value.isspace():
            return value
        errs.add(path, f"{'only whitespace' if value else 'empty'} (expected {TEXT})")
    elif value is MISSING:
        errs.add(path, f"missing (expected {TEXT})")
    else:
        errs.add(path, f"expected a string, got {kind(value)}")
    return None


def optional_text(record: dict[str, Any], key: str, errs: Problems) -> str | None:
    """An optional string field: None when absent, null or blank."""
    errs.use(key)
    value = record.get(key)
    if value is None or (isinstance(value, str) and (not value or value.isspace())):
        return None
    if not isinstance(value, str):
        errs.add(key, f"expected a string, got {kind(value)}")
        return None
    return value


def media_problem(record: dict[str, Any], errs: Problems) -> None:
    """Multimodal columns are refused: tunedeck trains text-only models, and dropping the media would silently
    change what the text refers to ("describe this image")."""
    if _MEDIA.isdisjoint(record):
        return
    for key in MEDIA_KEYS:
        if key not in record:
            continue
        errs.use(key)
        value = record[key]
        if not empty(value):
            n = f"{len(value)} item(s)" if isinstance(value, list) else kind(value)
            errs.add(key, f"multimodal record ({key} holds {n}): tunedeck imports text only; remove the "
                          f"'{key}' column or these records")


def content(value: Any, path: str, errs: Problems) -> str | None:
    """A message's content: a string, or a list of content parts whose text parts are joined by newlines."""
    if not isinstance(value, list):
        return text(value, path, errs)
    if not value:
        errs.add(path, f"empty (expected {TEXT} or a list of text parts)")
        return None
    pieces: list[str] = []
    before = len(errs.items)
    for i, part in enumerate(value):
        where = f"{path}[{i}]"
        if isinstance(part, str):
            pieces.append(part)
        elif not isinstance(part, dict):
            errs.add(where, f"expected a content part (an object with type and text), got {kind(part)}")
        elif part.get("type") in MEDIA_PARTS:
            errs.add(f"{where}.type", f"multimodal content part ({part['type']}): tunedeck imports text only")
        elif part.get("type", "text") != "text":
            errs.add(f"{where}.type", f"unknown content part type {show(part.get('type'))}, expected text")
        else:
            piece = part.get("text", MISSING)
            if isinstance(piece, str):
                pieces.append(piece)
            else:
                text(piece, f"{where}.text", errs)
            errs.unused.update(f"{path}[].{k}" for k in part if k not in ("type", "text") and not empty(part[k]))
    if len(errs.items) != before:
        return None
    return text("\n".join(pieces), path, errs)


# --- tools ----------------------------------------------------------------------------------------------


def tools(record: dict[str, Any], errs: Problems) -> list[dict[str, Any]] | None:
    """The ``tools`` column: a list of JSON schemas (or a JSON string of one), each as OpenAI's
    ``{"type": "function", "function": {...}}``; None when absent or empty."""
    value = record.get("tools")
    if value is None:
        return None
    errs.use("tools")
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            value = json.loads(value)
        except ValueError as e:
            errs.add("tools", f"not valid JSON ({str(e).split(':')[0].lower()}); expected a list of tool schemas")
            return None
    if empty(value):
        return None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        errs.add("tools", f"expected a list of tool schemas, got {kind(value)}")
        return None
    out = []
    for i, tool in enumerate(value):
        schema = tool.get("function") if isinstance(tool, dict) and tool.get("type") == "function" else tool
        if not isinstance(schema, dict) or not isinstance(schema.get("name"), str) or not schema["name"]:
            errs.add(f"tools[{i}]", "expected a tool schema with a name (an object like {\"name\": ..., "
                                    "\"parameters\": {...}})")
            continue
        out.append(tool if schema is not tool else {"type": "function", "function": tool})
    return out


def tool_calls(value: Any, path: str, errs: Problems) -> list[dict[str, Any]] | None:
    """Tool calls in OpenAI's shape (``{"type": "function", "function": {"name", "arguments"}}`` or flat
    ``{"name", "arguments"}``), arguments given as an object or a JSON string of one."""
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not value:
        errs.add(path, f"expected a list of tool calls, got {kind(value)}")
        return None
    out = []
    for i, call in enumerate(value):
        where = f"{path}[{i}]"
        fn = call.get("function") if isinstance(call, dict) and isinstance(call.get("function"), dict) else call
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            errs.add(where, "expected a tool call with a function name")
            continue
        args = fn.get("arguments", fn.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                errs.add(f"{where}.arguments", "not valid JSON (expected a JSON object of arguments)")
                continue
        if not isinstance(args, dict):
            errs.add(f"{where}.arguments", f"expected an object of arguments, got {kind(args)}")
            continue
        normal: dict[str, Any] = {"type": "function", "function": {"name": fn["name"], "arguments": args}}
        if isinstance(call, dict) and isinstance(call.get("id"), str):
            normal["id"] = call["id"]
        out.append(normal)
    return out if len(out) == len(value) else None


# --- messages -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Style:
    """How a layout names a message's speaker and text, and its speakers' roles."""

    role_key: str
    content_key: str
    roles: dict[str, str]
    expected: str  # what the list is called in errors
    names: dict[str, str]  # role -> the layout's name for it, in errors


CHAT = Style("role", "content", {r: r for r in ROLES}, "a list of messages", {r: r for r in ROLES})
SHAREGPT = Style("from", "value",
                 {"human": "user", "gpt": "assistant", "system": "system", "function_call": "assistant",
                  "observation": "tool"},
                 "a list of turns", {"user": "human", "assistant": "gpt", "system": "system", "tool": "observation"})


_PLAIN_ROLES = {k: v for k, v in SHAREGPT.roles.items() if k != "function_call"}  # speakers of text turns


def message_list(value: Any, path: str, errs: Problems, expected: str) -> list[Any] | None:
    if isinstance(value, list):
        if value:
            return value
        errs.add(path, "empty (expected at least one message)")
    elif value is MISSING:
        errs.add(path, f"missing (expected {expected})")
    else:
        errs.add(path, f"expected {expected}, got {kind(value)}")
    return None


def messages(value: Any, path: str, errs: Problems, style: Style = CHAT,
             expected: str | None = None) -> list[dict[str, Any]] | None:
    """Messages normalized (see the module docstring), each checked (a bad part is noted and left None);
    None if VALUE is not a non-empty list."""
    items = message_list(value, path, errs, expected or style.expected)
    if items is None:
        return None
    out: list[dict[str, Any]] = []
    role_key, content_key = style.role_key, style.content_key
    roles = _PLAIN_ROLES if style is SHAREGPT else style.roles
    for i, item in enumerate(items):
        if type(item) is dict and len(item) == 2:  # the fast path: a plain, valid message
            role, body = item.get(role_key), item.get(content_key)
            role = roles.get(role) if type(role) is str else None
            if role is not None and type(body) is str and body and not body.isspace():
                out.append({"role": role, "content": body})
                continue
        out.append(message(item, f"{path}[{i}]", errs, style, path))
    return out


def message(item: Any, where: str, errs: Problems, style: Style, list_path: str) -> dict[str, Any]:
    """One message, any shape: the bad parts noted and left None."""
    if isinstance(item, dict) and style is SHAREGPT and "from" not in item and "role" in item:
        style = CHAT  # sharegpt files written with role/content keys
    role_key, content_key = style.role_key, style.content_key
    if not isinstance(item, dict):
        errs.add(where, f"expected an object with {role_key} and {content_key}, got {kind(item)}")
        return {"role": None, "content": None}
    raw_role = item.get(role_key, MISSING)
    role = _role(raw_role, f"{where}.{role_key}", errs, style)
    used = {role_key, content_key}
    out: dict[str, Any] = {"role": role, "content": None}
    body = item.get(content_key, MISSING)
    if raw_role == "function_call" and style is SHAREGPT:  # LLaMA-Factory: the value is the call as JSON
        calls = _json_calls(body, f"{where}.{content_key}", errs)
        out["content"] = ""
        if calls is not None:
            out["tool_calls"] = calls
    elif role == "assistant" and not empty(item.get("tool_calls")):
        used.add("tool_calls")
        calls = tool_calls(item["tool_calls"], f"{where}.tool_calls", errs)
        out["content"] = "" if body is MISSING or empty(body) else content(body, f"{where}.{content_key}", errs)
        if calls is not None:
            out["tool_calls"] = calls
    elif role == "tool":
        if isinstance(body, dict | list) and not (isinstance(body, list) and body and isinstance(body[0], dict)
                                                  and "type" in body[0]):
            body = json.dumps(body, ensure_ascii=False)  # a structured tool result, kept as its JSON
        out["content"] = content(body, f"{where}.{content_key}", errs)
        for key in ("tool_call_id", "name"):
            if isinstance(item.get(key), str) and item[key]:
                out[key] = item[key]
                used.add(key)
    else:
        out["content"] = content(body, f"{where}.{content_key}", errs)
    errs.unused.update(f"{list_path}[].{k}" for k in item if k not in used and not empty(item[k]))
    return out


def _json_calls(value: Any, path: str, errs: Problems) -> list[dict[str, Any]] | None:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            errs.add(path, "not valid JSON (a function_call turn holds the call as JSON: "
                           "{\"name\": ..., \"arguments\": {...}})")
            return None
    return tool_calls(value, path, errs)


def _role(value: Any, path: str, errs: Problems, style: Style) -> str | None:
    if isinstance(value, str):
        role = style.roles.get(value)
        if role is not None:
            return role
        word = "role" if style is CHAT else "speaker"
        hint = " (names are lower case)" if value.lower() in style.roles else ""
        errs.add(path, f"unknown {word} {show(value)}{hint}, expected one of {', '.join(style.roles)}")
    elif value is MISSING:
        errs.add(path, f"missing (expected one of {', '.join(style.roles)})")
    else:
        errs.add(path, f"expected a string, got {kind(value)}")
    return None


def check_turns(msgs: list[dict[str, Any]], path: str, errs: Problems, style: Style = CHAT,
                prompt: bool = False) -> None:
    """System only first and a user turn before any other; then an assistant turn to learn from, or
    (PROMPT) a last turn from the user. Turns whose role is unknown (None) are not judged."""
    name, role_key = style.names.get, style.role_key
    roles = [m["role"] for m in msgs]
    for i, role in enumerate(roles):
        if role == "system" and i > 0:
            errs.add(f"{path}[{i}].{role_key}", "a system message may only come first")
    first = 1 if roles[0] == "system" else 0
    if first < len(roles) and roles[first] not in ("user", None):
        errs.add(f"{path}[{first}].{role_key}",
                 f"the conversation must start with a {name('user')} message, got {name(roles[first])}")
    last = len(roles) - 1
    if prompt:
        if roles[last] not in ("user", None) and last != first:
            errs.add(f"{path}[{last}].{role_key}", f"the prompt must end with a user message, got {roles[last]}")
    elif None not in roles and "assistant" not in roles:
        errs.add(path, f"no {name('assistant')} message to learn from")


def split_last_assistant(msgs: list[dict[str, Any]], path: str, errs: Problems,
                         style: Style = CHAT) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """A whole conversation as (everything before its last assistant turn, that turn)."""
    last = next((i for i in range(len(msgs) - 1, -1, -1) if msgs[i]["role"] == "assistant"), None)
    if last is None:
        errs.add(path, f"no {style.names['assistant']} message to learn from")
        return None
    if last != len(msgs) - 1:
        errs.add(f"{path}[{last + 1}].{style.role_key}",
                 f"nothing may follow the last {style.names['assistant']} message (it is the completion)")
        return None
    return msgs[:last], msgs[last:]
