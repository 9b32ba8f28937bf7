"""The chat pane: talk to a GGUF model, answers streaming in; every exchange is saved as a chat session.

The model loads and answers in Textual thread workers (llama-cpp-python releases the GIL while it
computes), the UI hears from them through `call_from_thread`, at most every STREAM_INTERVAL while
an answer streams. Store writes go through one writer thread per screen, so they keep their order
(an edit's delete before the resent question) without making the UI wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Input, Static

from core.chat import ChatRecorder, sampling_params
from store.db import Store
from store.errors import TunedeckError
from tui.screens.chat_actions import SessionActions
from tui.widgets.chat_common import STREAM_INTERVAL, PanelKeys, answer_note, model_facts
from tui.widgets.chat_log import ChatLog, MessageView
from tui.widgets.chat_params import ParamsPanel

if TYPE_CHECKING:
    from core.chat import ModelRef
    from engine.chat.llama import Answer, ChatEngine, Generation
    from engine.chat.params import SamplingParams


@dataclass
class Turn:
    """A message on screen: its text, its row once saved, its block."""

    role: str
    content: str
    view: MessageView
    message_id: int | None = None


class ChatScreen(PanelKeys, SessionActions, Screen[None]):
    """Chat with one model: enter sends, esc stops an answer, ctrl+r/ctrl+e regenerate or edit, f2 settings."""

    HELP_TITLE = "Chat"
    AUTO_FOCUS = "#prompt"
    DEFAULT_CSS = """
    ChatScreen #chat-body { height: 1fr; }
    ChatScreen #prompt { margin: 0 0; }
    ChatScreen #chat-status { height: 1; padding: 0 1; background: $panel; color: $text-muted; }
    """
    BINDINGS = [
        Binding("escape", "stop_or_back", "Stop/back", id="chat.stop_or_back"),
        Binding("ctrl+r", "regenerate", "Regenerate", priority=True, id="chat.regenerate"),
        Binding("ctrl+e", "edit_last", "Edit last", priority=True, id="chat.edit_last"),
        Binding("ctrl+s", "export", "Export", priority=True, id="chat.export"),
        Binding("f2", "toggle_panel", "Settings", id="chat.toggle_panel"),
        Binding("ctrl+l", "clear", "New chat", show=False, priority=True, id="chat.clear"),
        Binding("ctrl+t", "to_dataset", "Add to a dataset", show=False, priority=True, id="chat.to_dataset"),
        Binding("ctrl+o", "sessions", "Saved sessions", show=False, priority=True, id="chat.sessions"),
        Binding("f1", "app.help", "Keys", show=False, id="chat.help"),  # ? types a ? in the text box
    ]

    def __init__(self, model: str | None = None, *, session_id: int | None = None, project: str | None = None,
                 system: str = "", params: SamplingParams | None = None,
                 load_options: dict[str, Any] | None = None) -> None:  # fmt: skip
        super().__init__()
        if model is None and session_id is None:
            raise ValueError("give a model or a session to reopen")
        self.model_text = model
        self.session_id = session_id
        self.project = project
        self.initial_system = system
        self.initial_params = params or sampling_params()
        self.load_options = dict(load_options or {})
        self.model: ModelRef | None = None
        self.engine: ChatEngine | None = None
        self.recorder: ChatRecorder | None = None
        self.turns: list[Turn] = []
        self.load_error = ""
        self.last_answer: Answer | None = None
        self.busy = False
        self.generation: Generation | None = None
        self._stop_asked = False
        self._ended_at = 0.0
        self._closing = False
        self._idle = threading.Event()
        self._idle.set()
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-store")

    @property
    def store(self) -> Store:
        return self.app.store  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static("[b]tunedeck[/b] · chat", id="topbar")
        with Horizontal(id="chat-body"):
            yield ChatLog(id="conversation")
            yield ParamsPanel(self.initial_system, self.initial_params, id="side")
        yield Input(placeholder="Loading the model… (type meanwhile; enter sends once it is loaded)", id="prompt")
        yield Static("loading…", id="chat-status")
        yield Footer()

    @property
    def log_view(self) -> ChatLog:
        return self.query_one("#conversation", ChatLog)

    def on_mount(self) -> None:
        self._set_topbar()
        self._load(self.model_text, self.session_id)

    def on_unmount(self) -> None:
        self._closing = True
        self.stop_answers()
        threading.Thread(target=self._cleanup, name="chat-cleanup", daemon=True).start()

    def _cleanup(self) -> None:
        """Once the answer in progress has stopped: free the model, let queued writes finish."""
        self._idle.wait(timeout=60)
        if self.engine is not None:
            self.engine.close()
        self._writes.shutdown(wait=True)

    # -- talking to the UI and the store from threads -------------------------------------

    def _ui(self, callback: Callable[..., Any], *args: Any) -> bool:
        """Run `callback(*args)` on the UI thread; False when the screen or app is gone."""
        if self._closing:
            return False
        try:
            self.app.call_from_thread(callback, *args)
        except RuntimeError:  # the app stopped
            return False
        return True

    def _write(self, work_fn: Callable[[], Any]) -> Future:
        """Queue a store write behind the earlier ones (runs at once if the writer is gone)."""
        try:
            return self._writes.submit(work_fn)
        except RuntimeError:  # shut down: the screen closed
            future: Future = Future()
            try:
                future.set_result(work_fn())
            except Exception as exc:
                future.set_exception(exc)
            return future

    # -- loading ---------------------------------------------------------------------------

    @work(thread=True, exit_on_error=False, group="chat-load")
    def _load(self, model_text: str | None, session_id: int | None) -> None:
        from core.chat import load_model, project_id, resolve_model, saved_session

        try:
            project = None
            if session_id is not None:
                saved = saved_session(self.store, session_id)
                project, model_text = saved.project_id, saved.model_path
                if "n_ctx" in saved.params and "n_ctx" not in self.load_options:
                    self.load_options["n_ctx"] = saved.params["n_ctx"]
                self._ui(self._show_session, saved.params, saved.messages)
            elif self.project:
                project = project_id(self.store, self.project)
            assert model_text is not None
            self._ui(self._set_status, f"reading {Path(model_text).name}…")
            model = resolve_model(model_text, self.store)
            recorder = ChatRecorder(self.store, model, project, session_id)
            engine = load_model(model, **self.load_options)
        except TunedeckError as exc:
            self._ui(self._load_failed, str(exc))
            return
        except Exception as exc:  # never let a bad file take the app down
            self._ui(self._load_failed, f"unexpected {type(exc).__name__}: {exc}")
            return
        if not self._ui(self._loaded, model, recorder, engine):
            engine.close()

    def _show_session(self, params: dict[str, Any], messages: list[tuple[str, str, int, dict]]) -> None:
        """A reopened session: its settings into the panel, its messages onto the screen."""
        from core.chat import stored_answer, stored_params

        system = str(params.get("system") or "")
        self.query_one(ParamsPanel).set_values(system, stored_params(params))
        for role, content, message_id, timing in messages:
            if role == "system":
                continue
            answer = stored_answer(content, timing) if role == "assistant" else None
            view = self.log_view.add(role, content, answer_note(answer) if answer else "")
            self.turns.append(Turn(role, content, view, message_id))
        self._set_topbar()

    def _loaded(self, model: ModelRef, recorder: ChatRecorder, engine: ChatEngine) -> None:
        self.model, self.recorder, self.engine = model, recorder, engine
        self.query_one("#prompt", Input).placeholder = "Ask something; enter sends · f2 settings · f1 keys"
        self.query_one(ParamsPanel).show_facts(model_facts(engine))
        if engine.warning:
            self.log_view.add("info", engine.warning, label="Warning")
            self.notify(engine.warning, title="No chat template", severity="warning", timeout=10)
        self._set_topbar()
        self._show_status()

    def _load_failed(self, message: str) -> None:
        self.load_error = message
        self.log_view.add("error", message, label="Could not load the model")
        self.query_one("#prompt", Input).placeholder = "No model loaded: esc goes back"
        self._set_status(f"[$error]not loaded[/]: {escape(message)}")
        self.notify(message, title="Could not load the model", severity="error", timeout=10)

    # -- status ----------------------------------------------------------------------------

    def _set_topbar(self) -> None:
        name = Path(self.model.path).name if self.model else Path(self.model_text or "").name or "…"
        where = f" · session {self.recorder.session_id}" if self.recorder and self.recorder.session_id else ""
        self.query_one("#topbar", Static).update(f"[b]tunedeck[/b] · chat · {escape(name)}{where}")

    def _set_status(self, markup: str) -> None:
        self.query_one("#chat-status", Static).update(markup)

    def status_text(self) -> str:
        """The status line: model, quantization, context use, device, and the last answer's timing."""
        engine = self.engine
        if engine is None:
            return "loading…"
        info = engine.info
        parts = [f"{escape(info.architecture)} {info.parameters_text} {escape(info.file_type)}",
                 f"ctx {engine.context_used}/{engine.n_ctx}", engine.device]  # fmt: skip
        answer = self.last_answer
        if answer is not None:
            if answer.ttft_s is not None:
                parts.append(f"TTFT {answer.ttft_s:.2f}s")
            if answer.tok_s:
                parts.append(f"{answer.tok_s:.1f} tok/s")
        if self.busy:
            parts.append("[$accent]answering… esc stops[/]")
        if engine.template.fallback:
            parts.append("[$warning]ChatML fallback[/]")
        return " · ".join(parts)

    def _show_status(self) -> None:
        self._set_status(self.status_text())

    # -- asking ----------------------------------------------------------------------------

    def history(self, system: str) -> list[dict[str, str]]:
        """The conversation as the model gets it: the system prompt, then every message on screen."""
        head = [{"role": "system", "content": system}] if system else []
        return head + [{"role": t.role, "content": t.content} for t in self.turns]

    def _ready(self) -> bool:
        if self.busy:
            self.notify("An answer is still coming; esc stops it.", severity="warning")
            return False
        if self.engine is None:
            self.notify(self.load_error or "The model is still loading.", severity="warning")
            return False
        return True

    def _read_panel(self) -> tuple[str, SamplingParams] | None:
        try:
            return self.query_one(ParamsPanel).read()
        except TunedeckError as exc:
            self.notify(str(exc), title="Settings", severity="error")
            self.query_one(ParamsPanel).add_class("-shown")
            return None

    @on(Input.Submitted, "#prompt")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text or not self._ready():
            return
        settings = self._read_panel()
        if settings is None:
            return
        event.input.value = ""
        view = self.log_view.add("user", text)
        self.turns.append(Turn("user", text, view))
        self._ask(*settings)

    def _ask(self, system: str, params: SamplingParams) -> None:
        """Answer the conversation on screen (which ends with a question)."""
        from core.chat import session_params

        assert self.engine is not None
        self.busy = True
        self._stop_asked = False
        self._idle.clear()
        view = self.log_view.add("assistant", "")
        stored = session_params(system, params, self.engine.settings())
        self._answer(self.history(system), params, stored, self.turns[-1], view)
        self._show_status()

    @work(thread=True, exit_on_error=False, group="chat-answer")
    def _answer(self, history: list[dict[str, str]], params: SamplingParams, stored: dict[str, Any],
                question: Turn, view: MessageView) -> None:  # fmt: skip
        try:
            self._answer_inner(history, params, stored, question, view)
        except Exception as exc:  # a failure inside llama.cpp or the store: say so, stay up
            message = str(exc) if isinstance(exc, TunedeckError) else f"unexpected {type(exc).__name__}: {exc}"
            self._ui(self._answer_failed, message, view)
        finally:
            self.generation = None
            self._idle.set()

    def _answer_inner(self, history: list[dict[str, str]], params: SamplingParams, stored: dict[str, Any],
                      question: Turn, view: MessageView) -> None:  # fmt: skip
        engine, recorder = self.engine, self.recorder
        assert engine is not None and recorder is not None
        try:
            generation = engine.generate(history, params)
        except TunedeckError as exc:  # the context is full, or the template refused
            self._ui(self._answer_refused, str(exc), question, view)
            return
        self.generation = generation
        if self._stop_asked:
            generation.stop()
        if question.message_id is None:
            timing = {"prompt_tokens": len(generation.prompt)}
            question.message_id = self._write(lambda: recorder.add("user", question.content, timing, stored)).result()
        text = ""
        pushed = time.monotonic()
        for piece in generation:
            text += piece
            if time.monotonic() - pushed >= STREAM_INTERVAL:
                self._ui(self._stream, view, text)
                pushed = time.monotonic()
        answer = generation.answer
        assert answer is not None
        saved = self._write(lambda: recorder.add("assistant", answer.text, answer.timing()))
        message_id: int | None = None
        problem = ""
        try:
            message_id = saved.result()
        except Exception as exc:
            problem = f"the answer could not be saved: {exc}"
        self._ui(self._answered, view, answer, message_id, problem)

    def _stream(self, view: MessageView, text: str) -> None:
        view.set_text(text)
        self.log_view.follow()

    def _finish(self) -> None:
        self.busy = False
        self._ended_at = time.monotonic()
        self._set_topbar()
        self._show_status()

    def _answered(self, view: MessageView, answer: Answer, message_id: int | None, problem: str) -> None:
        view.set_text(answer.text if answer.text else "(no text)")
        view.set_note(answer_note(answer))
        self.turns.append(Turn("assistant", answer.text, view, message_id))
        self.last_answer = answer
        self.log_view.follow()
        self._finish()
        if problem:
            self.notify(problem, severity="error")

    def _answer_refused(self, message: str, question: Turn, view: MessageView) -> None:
        """Nothing was generated (context full...): the question goes back into the box, nothing is saved."""
        view.remove()
        if question.message_id is None and self.turns and self.turns[-1] is question:
            self.turns.pop()
            question.view.remove()
            box = self.query_one("#prompt", Input)
            if not box.value:
                box.value = question.content
        self.log_view.add("error", message, label="Cannot answer")
        self.notify(message, title="Cannot answer", severity="error", timeout=10)
        self._finish()

    def _answer_failed(self, message: str, view: MessageView) -> None:
        view.set_text(message)
        view.set_note("failed")
        view.add_class("-error")
        self.notify(message, title="The answer failed", severity="error", timeout=10)
        self._finish()

    # -- keys ------------------------------------------------------------------------------

    def stop_answers(self) -> None:
        self._stop_asked = True
        if self.generation is not None:
            self.generation.stop()

    def _drop_from(self, index: int) -> None:
        """Remove turns[index:] from the screen and (queued) from the store."""
        dropped = self.turns[index:]
        del self.turns[index:]
        for turn in dropped:
            turn.view.remove()
        first = next((t.message_id for t in dropped if t.message_id is not None), None)
        recorder = self.recorder
        if first is not None and recorder is not None:
            self._write(lambda: recorder.delete_from(first))

    def action_regenerate(self) -> None:
        """ctrl+r: answer the last question again (a new answer replaces the last one)."""
        if not self._ready():
            return
        if not self.turns:
            self.notify("Nothing to regenerate yet.", severity="warning")
            return
        if self.turns[-1].role == "assistant":
            self._drop_from(len(self.turns) - 1)
        if not self.turns or self.turns[-1].role != "user":
            self.notify("Nothing to regenerate yet.", severity="warning")
            return
        settings = self._read_panel()
        if settings is not None:
            self._ask(*settings)

    def action_edit_last(self) -> None:
        """ctrl+e: take the last question back into the box (it and its answer are removed); enter resends it."""
        if not self._ready():
            return
        index = next((i for i in range(len(self.turns) - 1, -1, -1) if self.turns[i].role == "user"), None)
        if index is None:
            self.notify("No question to edit yet.", severity="warning")
            return
        text = self.turns[index].content
        self._drop_from(index)
        box = self.query_one("#prompt", Input)
        box.value = text
        box.cursor_position = len(text)
        box.focus()

    def action_clear(self) -> None:
        """ctrl+l: start a new conversation with the same model (the old one stays saved)."""
        if self.busy:
            self.notify("An answer is still coming; esc stops it.", severity="warning")
            return
        saved = self.recorder is not None and self.recorder.session_id is not None
        self.log_view.clear_messages()
        self.turns.clear()
        self.last_answer = None
        if self.engine is not None:
            self.engine.context_used = 0
        if self.recorder is not None:
            self.recorder = ChatRecorder(self.store, self.recorder.model, self.recorder.project_id)
        self._set_topbar()
        self._show_status()
        self.notify("New conversation." + (" The previous one is saved (ctrl+o lists sessions)." if saved else ""))
