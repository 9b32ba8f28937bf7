"""Two models side by side: each question goes to both with the same seed and settings, and both answers
stream at once (two worker threads; llama.cpp computes without the GIL). Each side keeps its own
conversation. Comparisons are not saved as sessions."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from core.chat import sampling_params
from store.errors import TunedeckError
from tui.widgets.chat_common import STREAM_INTERVAL, PanelKeys, answer_note
from tui.widgets.chat_log import ChatLog, MessageView
from tui.widgets.chat_params import ParamsPanel

if TYPE_CHECKING:
    from engine.chat.llama import Answer, ChatEngine, Generation
    from engine.chat.params import SamplingParams

SIDES = ("a", "b")
COMPARE_SEED = 42


@dataclass
class Side:
    """One model of the comparison and its own conversation."""

    ref: str
    engine: ChatEngine | None = None
    error: str = ""
    history: list[dict[str, str]] = field(default_factory=list)
    generation: Generation | None = None
    busy: bool = False
    stop_asked: bool = False
    last: Answer | None = None


class ChatCompareScreen(PanelKeys, Screen[None]):
    """enter asks both models; esc stops both answers (or goes back); f2 shows the shared settings."""

    HELP_TITLE = "Compare models"
    AUTO_FOCUS = "#prompt"
    DEFAULT_CSS = """
    ChatCompareScreen #compare-body { height: 1fr; }
    ChatCompareScreen .side { width: 1fr; height: 1fr; }
    ChatCompareScreen #side-b { border-left: vkey $primary; }
    ChatCompareScreen .side-title { height: 1; padding: 0 1; background: $boost; text-style: bold; }
    ChatCompareScreen .side-status { height: 1; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape", "stop_or_back", "Stop/back", id="chat_compare.stop_or_back"),
        Binding("f2", "toggle_panel", "Settings", id="chat_compare.toggle_panel"),
        Binding("f1", "app.help", "Keys", show=False, id="chat_compare.help"),  # ? types a ? in the text box
    ]

    def __init__(self, model_a: str, model_b: str, *, system: str = "", params: SamplingParams | None = None,
                 load_options: dict[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.sides = {"a": Side(model_a), "b": Side(model_b)}
        self.initial_system = system
        self.initial_params = params or sampling_params(seed=COMPARE_SEED)
        self.load_options = dict(load_options or {})
        self._closing = False
        self._ended_at = 0.0
        self._running = 0
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    def compose(self) -> ComposeResult:
        yield Static("[b]tunedeck[/b] · compare models", id="topbar")
        with Horizontal(id="compare-body"):
            for key in SIDES:
                with Vertical(classes="side", id=f"side-{key}"):
                    yield Static(escape(Path(self.sides[key].ref).name), classes="side-title", id=f"title-{key}")
                    yield ChatLog(id=f"log-{key}")
                    yield Static("loading…", classes="side-status", id=f"status-{key}")
            yield ParamsPanel(self.initial_system, self.initial_params, id="side")
        yield Input(placeholder="Loading both models…", id="prompt")
        yield Footer()

    def log_of(self, key: str) -> ChatLog:
        return self.query_one(f"#log-{key}", ChatLog)

    @property
    def busy(self) -> bool:
        return any(side.busy for side in self.sides.values())

    def on_mount(self) -> None:
        from core.chat import default_threads

        options = {"threads": max(1, default_threads() // 2), **self.load_options}  # the two share the cores
        for key in SIDES:
            self._load(key, options)

    def on_unmount(self) -> None:
        self._closing = True
        self.stop_answers()
        threading.Thread(target=self._cleanup, name="compare-cleanup", daemon=True).start()

    def _cleanup(self) -> None:
        self._idle.wait(timeout=60)
        for side in self.sides.values():
            if side.engine is not None:
                side.engine.close()

    def _ui(self, callback: Any, *args: Any) -> bool:
        if self._closing:
            return False
        try:
            self.app.call_from_thread(callback, *args)
        except RuntimeError:
            return False
        return True

    @work(thread=True, exit_on_error=False, group="compare-load")
    def _load(self, key: str, options: dict[str, Any]) -> None:
        from core.chat import load_model, resolve_model

        side = self.sides[key]
        try:
            model = resolve_model(side.ref, self.app.store)  # type: ignore[attr-defined]
            engine = load_model(model, **options)
        except Exception as exc:
            message = str(exc) if isinstance(exc, TunedeckError) else f"unexpected {type(exc).__name__}: {exc}"
            self._ui(self._load_failed, key, message)
            return
        if not self._ui(self._loaded, key, engine):
            engine.close()

    def _loaded(self, key: str, engine: ChatEngine) -> None:
        side = self.sides[key]
        side.engine = engine
        info = engine.info
        self.query_one(f"#title-{key}", Static).update(
            f"{escape(Path(info.path).name)} [dim]{escape(info.architecture)} {info.parameters_text} "
            f"{escape(info.file_type)}[/dim]"
        )
        if engine.warning:
            self.log_of(key).add("info", engine.warning, label="Warning")
        self._show_status(key)
        if all(s.engine is not None or s.error for s in self.sides.values()):
            box = self.query_one("#prompt", Input)
            box.placeholder = "Ask both models; enter sends · esc stops · f2 settings · f1 keys"

    def _load_failed(self, key: str, message: str) -> None:
        self.sides[key].error = message
        self.log_of(key).add("error", message, label="Could not load the model")
        self.query_one(f"#status-{key}", Static).update("[$error]not loaded[/]")
        self.notify(message, title="Could not load a model", severity="error", timeout=10)

    def _show_status(self, key: str) -> None:
        side = self.sides[key]
        engine = side.engine
        if engine is None:
            return
        parts = []  # the speeds first: a narrow pane cuts the end off
        if side.busy:
            parts.append("[$accent]answering…[/]")
        if side.last is not None:
            if side.last.tok_s:
                parts.append(f"{side.last.tok_s:.1f} tok/s")
            if side.last.ttft_s is not None:
                parts.append(f"TTFT {side.last.ttft_s:.2f}s")
        parts += [f"ctx {engine.context_used}/{engine.n_ctx}", engine.device]
        self.query_one(f"#status-{key}", Static).update(" · ".join(parts))

    @on(Input.Submitted, "#prompt")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            return
        if self.busy:
            self.notify("The answers are still coming; esc stops them.", severity="warning")
            return
        ready = [key for key in SIDES if self.sides[key].engine is not None]
        if len(ready) < 2:
            failed = [s.error for s in self.sides.values() if s.error]
            self.notify(failed[0] if failed else "The models are still loading.", severity="warning")
            return
        try:
            system, params = self.query_one(ParamsPanel).read()
        except TunedeckError as exc:
            self.notify(str(exc), title="Settings", severity="error")
            return
        if params.seed is None:  # one seed, the same for both
            params = params.replace(seed=random.randrange(2**31))
        event.input.value = ""
        self._idle.clear()
        for key in SIDES:
            side = self.sides[key]
            if not side.history and system:
                side.history.append({"role": "system", "content": system})
            side.history.append({"role": "user", "content": text})
            log = self.log_of(key)
            log.add("user", text)
            view = log.add("assistant", "")
            side.busy = True
            side.stop_asked = False
            with self._lock:
                self._running += 1
            self._answer(key, list(side.history), params, view)
            self._show_status(key)

    @work(thread=True, exit_on_error=False, group="compare-answer")
    def _answer(self, key: str, history: list[dict[str, str]], params: SamplingParams, view: MessageView) -> None:
        side = self.sides[key]
        try:
            assert side.engine is not None
            generation = side.engine.generate(history, params)
            side.generation = generation
            if side.stop_asked:
                generation.stop()
            text = ""
            pushed = time.monotonic()
            for piece in generation:
                text += piece
                if time.monotonic() - pushed >= STREAM_INTERVAL:
                    self._ui(self._stream, key, view, text)
                    pushed = time.monotonic()
            assert generation.answer is not None
            self._ui(self._answered, key, view, generation.answer, "")
        except Exception as exc:
            message = str(exc) if isinstance(exc, TunedeckError) else f"unexpected {type(exc).__name__}: {exc}"
            self._ui(self._answered, key, view, None, message)
        finally:
            side.generation = None
            with self._lock:
                self._running -= 1
                if self._running == 0:
                    self._idle.set()

    def _stream(self, key: str, view: MessageView, text: str) -> None:
        view.set_text(text)
        self.log_of(key).follow()

    def _answered(self, key: str, view: MessageView, answer: Answer | None, problem: str) -> None:
        side = self.sides[key]
        side.busy = False
        if answer is None:
            side.history.pop()  # the question got no answer on this side
            view.set_text(problem)
            view.set_note("failed")
            view.add_class("-error")
        else:
            side.last = answer
            side.history.append({"role": "assistant", "content": answer.text})
            view.set_text(answer.text or "(no text)")
            view.set_note(answer_note(answer))
        self.log_of(key).follow()
        self._show_status(key)
        if not self.busy:
            self._ended_at = time.monotonic()

    def stop_answers(self) -> None:
        for side in self.sides.values():
            side.stop_asked = True
            if side.generation is not None:
                side.generation.stop()

