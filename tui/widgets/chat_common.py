"""What both chat screens (one model, or two compared) share: the streaming pace, the note above an answer,
the model's facts block, and esc/f2 handling."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from textual.markup import escape
from textual.widgets import Input

from tui.widgets.chat_params import ParamsPanel

if TYPE_CHECKING:
    from engine.chat.llama import Answer, ChatEngine

STREAM_INTERVAL = 0.05  # seconds between screen updates while an answer streams
ESC_GRACE = 1.0  # esc this soon after an answer ended was meant to stop it: it does not leave the screen


def answer_note(answer: Answer) -> str:
    """The line above an answer: tokens, time to first token, speed, and whether it was cut short."""
    parts = [f"{answer.tokens} tok"]
    if answer.ttft_s is not None:
        parts.append(f"first {answer.ttft_s:.2f} s")
    if answer.tok_s:
        parts.append(f"{answer.tok_s:.1f} tok/s")
    if answer.finish == "stopped":
        parts.append("stopped")
    elif answer.finish == "length":
        parts.append("hit max tokens")
    return " · ".join(parts)


def model_facts(engine: ChatEngine) -> str:
    """The side panel's model block (markup)."""
    info = engine.info
    lines = [
        f"[b]{escape(Path(info.path).name)}[/b]",
        f"{escape(info.architecture)} · {info.parameters_text} params",
        f"{escape(info.file_type)} · {info.size / 1e6:.0f} MB",
        f"trained ctx {info.context_length or '?'} · n_ctx {engine.n_ctx}",
        f"{engine.device} · {engine.threads} thread(s)",
        f"template: {engine.template.label}",
    ]
    if engine.template.fallback:
        lines.append("[$warning]no chat template in the GGUF[/]")
    return "\n".join(lines)


class PanelKeys:
    """esc and f2 as both chat screens (one model, or two compared) use them: esc stops the answers in
    progress, else closes the settings panel, else leaves; f2 shows or hides the panel."""

    busy: bool
    _ended_at: float

    def stop_answers(self) -> None:
        raise NotImplementedError

    def action_stop_or_back(self) -> None:
        if self.busy:
            self.stop_answers()
            return
        panel = self.query_one(ParamsPanel)  # type: ignore[attr-defined]
        if panel.has_class("-shown"):
            panel.remove_class("-shown")
            self.query_one("#prompt", Input).focus()  # type: ignore[attr-defined]
            return
        if time.monotonic() - self._ended_at >= ESC_GRACE:
            self.dismiss()  # type: ignore[attr-defined]

    def action_toggle_panel(self) -> None:
        panel = self.query_one(ParamsPanel)  # type: ignore[attr-defined]
        panel.toggle_class("-shown")
        target = panel.query_one("#param-system", Input) if panel.has_class("-shown") else self.query_one(  # type: ignore[attr-defined]
            "#prompt", Input)
        target.focus()
