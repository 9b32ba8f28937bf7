"""One dataset record on screen: its turns (chat messages, preference pairs, labelled answers, segments or
text) as widgets with a coloured bar by role, in a scrollable body whose page keys turn the page."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

MAX_TURN_CHARS = 20_000  # of one turn's content on screen; the rest is counted, not drawn
ROLE_STYLE = {
    "system": "bold magenta",
    "user": "bold cyan",
    "assistant": "bold green",
    "tool": "bold yellow",
    "chosen": "bold green",
    "rejected": "bold red",
    "text": "bold",
}


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        text = content
    elif content is None:
        text = ""
    else:
        text = json.dumps(content, ensure_ascii=False, indent=1)
    if len(text) > MAX_TURN_CHARS:
        text = text[:MAX_TURN_CHARS] + f"\n… {len(text) - MAX_TURN_CHARS:,} more characters"
    return text


def record_turns(record: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A normalized record as (label, style key, content) turns: chat messages, preference pairs or text."""
    if "_error" in record:
        return [("error", "rejected", str(record["_error"]))]

    def messages(value: Any, prefix: str = "", style: str | None = None) -> list[tuple[str, str, str]]:
        out = []
        for message in value if isinstance(value, list) else ():
            if not isinstance(message, dict):
                continue
            role = str(message.get("role", "?"))
            body = _content_text(message.get("content"))
            for call in message.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    args = json.dumps(fn.get("arguments"), ensure_ascii=False)
                    body += f"{chr(10) if body else ''}→ calls {fn.get('name')}({args})"
            out.append((f"{prefix}{role}", style or role, body))
        return out

    if "messages" in record:
        turns = []
        if record.get("tools"):
            names = [str((t.get("function") or t).get("name")) for t in record["tools"] if isinstance(t, dict)]
            turns.append(("tools", "tool", ", ".join(names)))
        return turns + messages(record["messages"])
    if "segments" in record:
        return [("trained" if seg.get("label") else "context", "chosen" if seg.get("label") else "text",
                 _content_text(seg.get("text"))) for seg in record["segments"] if isinstance(seg, dict)]
    if "completion" in record:
        label = "desirable" if record.get("label") else "undesirable"
        return messages(record.get("prompt"), "prompt · ") + messages(
            record.get("completion"), f"{label} · ", "chosen" if record.get("label") else "rejected")
    if "chosen" in record or "rejected" in record:
        turns = messages(record.get("prompt"), "prompt · ")
        turns += messages(record.get("chosen"), "chosen · ", "chosen")
        turns += messages(record.get("rejected"), "rejected · ", "rejected")
        return turns
    if "text" in record:
        return [("text", "text", _content_text(record["text"]))]
    rest = {k: v for k, v in record.items() if k != "id"}
    return [("record", "text", _content_text(rest))]


def turn_widget(label: str, style_key: str, content: str) -> Static:
    """One turn: its role label over its content, with a coloured bar on the left by role."""
    text = Text()
    text.append(label, style=ROLE_STYLE.get(style_key, "bold"))
    text.append("\n")
    text.append(content if content.strip() else "(empty)", style="" if content.strip() else "dim italic")
    role_class = style_key if style_key in ROLE_STYLE else "other"
    return Static(text, classes=f"turn role-{role_class}")


class PreviewBody(VerticalScroll):
    """The preview's scrollable record; page up/down turn the page (↑/↓ scroll within a record)."""

    BINDINGS = [
        Binding("pageup", "screen.prev_record", "Previous record", show=False, id="preview_body.prev_record"),
        Binding("pagedown", "screen.next_record", "Next record", show=False, id="preview_body.next_record"),
    ]
