"""The canonical text of a normalized example, the one the duplicate checks compare."""

from __future__ import annotations

import json
from typing import Any


def content_text(content: Any) -> str:
    """A message's content as text (text parts of a list joined by newlines; None is "")."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "\n".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)


def _messages_text(messages: Any, prefix: str = "") -> list[str]:
    out = []
    for m in messages or ():
        if isinstance(m, dict):
            line = f"{prefix}{m.get('role', '?')}: {content_text(m.get('content'))}"
            if m.get("tool_calls"):
                line += " " + json.dumps(m["tool_calls"], ensure_ascii=False, sort_keys=True)
            out.append(line)
    return out


def example_text(data: dict) -> str:
    """Canonical text of a normalized example: ``role: content`` lines (prompt, chosen and rejected for preference)."""
    if "messages" in data:
        return "\n".join(_messages_text(data["messages"]))
    if "chosen" in data or "rejected" in data:
        lines = _messages_text(data.get("prompt"))
        lines += _messages_text(data.get("chosen"), "chosen ")
        lines += _messages_text(data.get("rejected"), "rejected ")
        return "\n".join(lines)
    if "completion" in data:
        label = "desirable" if data.get("label") else "undesirable"
        return "\n".join(_messages_text(data.get("prompt")) + _messages_text(data.get("completion"), f"{label} "))
    if "segments" in data:
        return "\n".join(content_text(s.get("text")) for s in data["segments"] if isinstance(s, dict))
    if "text" in data:
        return content_text(data["text"])
    return ""
