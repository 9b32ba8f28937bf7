"""The chat pane at 80x24 with the real SmolLM2 GGUF: answers stream in, esc stops one, sessions are saved and
reopen, regenerate/edit/export keys, two models compared side by side, the model's facts and the template
fallback warning, and bad model files shown as a message while the app stays up and the store stays empty."""

# ruff: noqa: F811 - the chat_models fixtures are imported, then named as test arguments

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from chat_models import (  # noqa: F401 - fixtures, used as test arguments
    LONG_PROMPT,
    PROMPT,
    cut_header_gguf,
    no_template_gguf,
    not_gguf,
    smollm,
    truncated_gguf,
    unknown_arch_gguf,
)
from textual.pilot import Pilot
from textual.widgets import Input
from tui_pilot import drive, notes, screen_text, text, wait_for

from store.db import Store
from tui.app import TunedeckApp
from tui.screens.chat import ChatScreen
from tui.screens.chat_compare import ChatCompareScreen
from tui.screens.chat_new import NewChatDialog
from tui.screens.project import ProjectScreen
from tui.widgets.chat_params import ParamsPanel
from tui.widgets.live_table import LiveTable

ONE_THREAD = {"threads": 1}  # steady on a shared 2-core machine
LOAD_TIMEOUT = 60.0
ANSWER_TIMEOUT = 90.0


def _rows(store: Store, sql: str, *args: object) -> list[tuple]:
    with store.raw() as conn:
        return conn.execute(sql, args).fetchall()


def _count(store: Store, table: str) -> int:
    return _rows(store, f"SELECT count(*) FROM {table}")[0][0]


async def loaded(pilot: Pilot, screen: ChatScreen) -> None:
    await wait_for(pilot, lambda: screen.engine is not None or screen.load_error, "the model to load", LOAD_TIMEOUT)
    assert not screen.load_error, screen.load_error


async def settings(screen: ChatScreen | ChatCompareScreen, **values: object) -> None:
    panel = screen.query_one(ParamsPanel)
    for name, value in values.items():
        panel.query_one(f"#param-{name}", Input).value = str(value)


async def send(pilot: Pilot, screen: ChatScreen | ChatCompareScreen, question: str) -> None:
    box = screen.query_one("#prompt", Input)
    box.focus()
    box.value = question
    await pilot.press("enter")


async def answered(pilot: Pilot, screen: ChatScreen, turns: int) -> None:
    await wait_for(pilot, lambda: not screen.busy and len(screen.turns) == turns, f"{turns} turns", ANSWER_TIMEOUT)


def status(app: TunedeckApp) -> str:
    return text(app, "#chat-status")


@pytest.mark.slow
def test_chat_streams_stops_saves_and_reopens(store: Store, smollm: Path) -> None:
    from store.projects import create_project

    with store.write() as session:
        create_project(session, "p")

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: app.screen.query("#projects") and app.screen.projects, "the projects list")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen) and app.screen.data, "the project")
        await pilot.press("4")
        await pilot.pause()
        assert "Press c to chat with a GGUF model" in screen_text(app)
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, NewChatDialog), "the new-chat form")
        app.screen.query_one("#model", Input).value = str(smollm)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), "the chat screen")
        chat: ChatScreen = app.screen  # type: ignore[assignment]
        await loaded(pilot, chat)
        line = status(app)
        assert "llama 135M Q4_1" in line and "ctx 0/4096" in line and "CPU" in line

        # 1. a short greedy answer
        await settings(chat, temperature=0, max_tokens=40)
        await send(pilot, chat, PROMPT)
        await answered(pilot, chat, 2)
        assert "Berlin" in chat.turns[1].content
        assert "TTFT" in status(app) and "tok/s" in status(app) and "ctx 0/" not in status(app)
        assert "Berlin" in screen_text(app)

        # 2. a long answer: watch it grow refresh after refresh, then esc stops it
        await settings(chat, temperature=0.7, seed=3, max_tokens=300)
        await send(pilot, chat, LONG_PROMPT)
        lengths: list[int] = []
        while len(set(lengths)) < 4:
            await pilot.pause(0.02)
            views = chat.log_view.views
            if len(views) == 4 and views[-1].text:
                lengths.append(len(views[-1].text))
            assert chat.busy, "the answer ended before it was seen growing"
        assert lengths == sorted(lengths)  # it only grows
        await pilot.press("escape")
        await answered(pilot, chat, 4)
        stopped = chat.last_answer
        assert stopped is not None and stopped.finish == "stopped" and stopped.tokens < 300
        assert "stopped" in chat.log_view.views[-1].note
        assert isinstance(app.screen, ChatScreen)  # esc stopped the answer; it did not leave

        # saved: the session in the project, four messages, the timing of each answer
        await wait_for(pilot, lambda: _count(store, "chat_messages") == 4, "the messages to be saved")
        ((sid, project_id, title),) = _rows(store, "SELECT id, project_id, title FROM chat_sessions")
        assert project_id == 1 and title == PROMPT
        timings = [t for (t,) in _rows(store, "SELECT timing FROM chat_messages WHERE role = 'assistant' "
                                              "ORDER BY id")]  # fmt: skip
        assert '"stopped": false' in timings[0] and '"stopped": true' in timings[1]

        # back to the project: the Chat tab lists the session; enter reopens it with its messages
        await pilot.pause(1.1)  # esc right after an answer ends is taken as a late stop
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "the project screen")
        project: ProjectScreen = app.screen  # type: ignore[assignment]
        table = project.query_one("#chat-table", LiveTable)
        await wait_for(pilot, lambda: table.display and dict(table.shown), "the session in the Chat tab")
        table.focus()
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen), "the reopened chat")
        again: ChatScreen = app.screen  # type: ignore[assignment]
        await loaded(pilot, again)
        assert [t.role for t in again.turns] == ["user", "assistant", "user", "assistant"]
        assert again.turns[1].content == chat.turns[1].content and again.recorder.session_id == sid
        assert "stopped" in again.log_view.views[-1].note
        assert again.query_one("#param-seed", Input).value == "3"  # its settings came back too

    drive(store, scenario)


def test_regenerate_edit_export_and_clear(store: Store, smollm: Path) -> None:
    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        chat = ChatScreen(str(smollm), load_options=ONE_THREAD)
        await app.push_screen(chat)
        await loaded(pilot, chat)
        await settings(chat, temperature=0, max_tokens=40)
        await send(pilot, chat, PROMPT)
        await answered(pilot, chat, 2)
        first = chat.turns[1]

        await pilot.press("ctrl+r")  # regenerate: the last answer is replaced
        await wait_for(pilot, lambda: not chat.busy and len(chat.turns) == 2 and chat.turns[1] is not first,
                       "the new answer", ANSWER_TIMEOUT)  # fmt: skip
        assert chat.turns[1].content == first.content  # greedy: the same text again
        assert len(chat.log_view.views) == 2
        await wait_for(pilot, lambda: _count(store, "chat_messages") == 2, "the replaced answer in the store")

        await pilot.press("ctrl+e")  # edit: the question comes back into the box, it and its answer go
        box = chat.query_one("#prompt", Input)
        assert box.value == PROMPT and chat.turns == []
        box.value = "Name the capital of France."
        await pilot.press("enter")
        await answered(pilot, chat, 2)
        assert "Paris" in chat.turns[1].content
        await wait_for(pilot, lambda: _count(store, "chat_messages") == 2, "the edited exchange in the store")
        (question,), _ = _rows(store, "SELECT content FROM chat_messages ORDER BY id")
        assert question == "Name the capital of France."

        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "Saved to" in notes(app), "the export")
        exported = store.home / "exports" / f"chat-{chat.recorder.session_id}.md"
        assert "## You\n\nName the capital of France." in exported.read_text()

        await pilot.press("ctrl+l")  # a new conversation; the old one stays saved
        assert chat.turns == [] and chat.log_view.views == [] and chat.recorder.session_id is None
        await send(pilot, chat, PROMPT)
        await answered(pilot, chat, 2)
        await wait_for(pilot, lambda: _count(store, "chat_sessions") == 2, "a second session")

    drive(store, scenario)


def test_compare_streams_two_answers_side_by_side(store: Store, smollm: Path) -> None:
    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        compare = ChatCompareScreen(str(smollm), str(smollm), load_options=ONE_THREAD)
        await app.push_screen(compare)
        await wait_for(pilot, lambda: all(s.engine or s.error for s in compare.sides.values()), "both models",
                       LOAD_TIMEOUT)  # fmt: skip
        assert not any(s.error for s in compare.sides.values())
        await settings(compare, temperature=0.8, seed=11, max_tokens=60)
        streamed: dict[str, list[tuple[float, int]]] = {"a": [], "b": []}
        show = compare._stream

        def record(key: str, view: Any, text: str) -> None:  # each side's partial answers, as the UI gets them
            streamed[key].append((time.monotonic(), len(text)))
            show(key, view, text)

        compare._stream = record  # type: ignore[method-assign]
        await send(pilot, compare, LONG_PROMPT)
        await wait_for(pilot, lambda: not compare.busy, "both answers", ANSWER_TIMEOUT)
        seen = {key: {n for _, n in points} for key, points in streamed.items()}
        starts = [points[0][0] for points in streamed.values() if points]
        ends = [points[-1][0] for points in streamed.values() if points]
        assert len(starts) == 2 and max(starts) < min(ends), f"the answers did not stream at the same time: {streamed}"
        assert len(seen["a"]) >= 2 and len(seen["b"]) >= 2
        a, b = (compare.sides[k].last for k in ("a", "b"))
        assert a is not None and b is not None
        assert a.seed == b.seed == 11 and a.text == b.text  # same model, seed and settings: the same answer
        shown = screen_text(app)
        assert "tok/s" in shown and shown.count("Assistant") == 2

    drive(store, scenario)
    assert _count(store, "chat_sessions") == 0  # comparisons are not saved


def test_metadata_and_template_fallback_warning(store: Store, no_template_gguf: Path) -> None:
    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        chat = ChatScreen(str(no_template_gguf), load_options=ONE_THREAD)
        await app.push_screen(chat)
        await loaded(pilot, chat)
        assert "ChatML fallback" in status(app) and "llama 135M Q4_1" in status(app)
        assert "has no chat template" in chat.log_view.text and "Warning" in chat.log_view.text
        assert "has no chat template" in notes(app)
        await pilot.press("f2")
        facts = text(app, "#model-facts")
        assert "no-template.gguf" in facts and "llama · 135M params" in facts and "Q4_1 · 98 MB" in facts
        assert "trained ctx 8192 · n_ctx 4096" in facts and "template: ChatML (fallback)" in facts
        assert "CPU · 1 thread(s)" in facts
        assert app.focused is chat.query_one("#param-system", Input)

    drive(store, scenario)


@pytest.mark.slow
def test_bad_models_are_messages_and_the_app_stays_up(
    store: Store,
    smollm: Path,
    not_gguf: Path,
    truncated_gguf: Path,
    cut_header_gguf: Path,
    unknown_arch_gguf: Path,
) -> None:
    cases: list[tuple[str, dict, str]] = [
        (str(not_gguf), ONE_THREAD, "is not a GGUF file"),
        (str(truncated_gguf), ONE_THREAD, "truncated"),
        (str(cut_header_gguf), ONE_THREAD, "cannot be read"),
        (str(unknown_arch_gguf), ONE_THREAD, "does not know the model architecture 'tunedeckfoo'"),
        (
            str(smollm),
            {**ONE_THREAD, "free_memory": 10 * 1024 * 1024, "gpu": False},
            "is 93.8 MB but only 10.0 MB of memory is free",
        ),
        ("77", ONE_THREAD, "no GGUF artifact with that id or name"),
        ("/nowhere/model.gguf", ONE_THREAD, "no such file"),
    ]

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        base = app.screen
        for model, options, expected in cases:
            chat = ChatScreen(model, load_options=options)
            await app.push_screen(chat)
            await wait_for(pilot, lambda c=chat: c.load_error, f"the error for {model}", LOAD_TIMEOUT)
            assert expected in chat.load_error
            assert expected.split("'")[0] in chat.log_view.text and "not loaded" in status(app)
            await send(pilot, chat, "hello?")  # asking without a model: a notice, nothing else
            assert chat.turns == [] and not chat.busy
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is base, "the screen before")
        assert app.is_running

        # the context is full: a message, the question back in the box, nothing saved
        chat = ChatScreen(str(smollm), load_options={**ONE_THREAD, "n_ctx": 64})
        await app.push_screen(chat)
        await loaded(pilot, chat)
        long_question = "Tell me about Berlin. " * 30
        await send(pilot, chat, long_question)
        await wait_for(pilot, lambda: not chat.busy and "Cannot answer" in chat.log_view.text, "the refusal")
        assert "the context holds 64" in chat.log_view.text
        assert chat.turns == [] and chat.query_one("#prompt", Input).value == long_question.strip()
        await pilot.pause(1.1)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is base, "the screen before")
        assert app.is_running

    drive(store, scenario)
    assert _count(store, "chat_sessions") == 0 and _count(store, "chat_messages") == 0


def test_new_chat_form_checks_the_path(store: Store, tmp_path: Path) -> None:
    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        results: list[object] = []
        await app.push_screen(NewChatDialog(), results.append)
        dialog = app.screen
        dialog.query_one("#model", Input).value = str(tmp_path / "missing.gguf")
        await pilot.press("enter")
        assert "no such file" in text(app, "#error") and isinstance(app.screen, NewChatDialog)
        dialog.query_one("#model", Input).value = "3"  # an artifact id: looked up when the chat opens
        dialog.query_one("#compare", Input).value = str(tmp_path)
        await pilot.press("enter")
        await wait_for(pilot, lambda: results, "the form's result")
        assert results[0].model == "3" and results[0].compare == str(tmp_path)  # type: ignore[attr-defined]

    drive(store, scenario)


def test_sessions_list_reopens_a_session(store: Store, smollm: Path) -> None:
    from store.chat import add_message, create_session

    with store.write() as session:
        sid = create_session(session, str(smollm), params={"system": "Be brief.", "temperature": 0.0}).id
        add_message(session, sid, "user", PROMPT)
        add_message(session, sid, "assistant", "The capital of Germany is Berlin.", {"tokens": 7, "ttft_s": 0.3,
                    "tok_s": 50.0, "prompt_tokens": 30, "total_s": 0.5, "finish": "stop", "seed": 1})  # fmt: skip

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        chat = ChatScreen(str(smollm), load_options=ONE_THREAD)
        await app.push_screen(chat)
        await loaded(pilot, chat)
        await pilot.press("ctrl+o")
        await wait_for(pilot, lambda: "Name the capital of Germany." in screen_text(app), "the sessions list")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ChatScreen) and app.screen is not chat, "the session")
        again: ChatScreen = app.screen  # type: ignore[assignment]
        await wait_for(pilot, lambda: len(again.turns) == 2, "its messages")
        assert again.query_one("#param-system", Input).value == "Be brief."
        assert "7 tok · first 0.30 s · 50.0 tok/s" in again.log_view.views[-1].note
        await loaded(pilot, again)

    drive(store, scenario)


def test_chat_screen_needs_a_model_or_session() -> None:
    with pytest.raises(ValueError):
        ChatScreen()


def test_leaving_mid_answer_stops_it(store: Store, smollm: Path) -> None:
    """Closing the app while an answer streams stops it (no thread keeps generating) and saves what came."""
    started = time.monotonic()

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        chat = ChatScreen(str(smollm), load_options=ONE_THREAD)
        await app.push_screen(chat)
        await loaded(pilot, chat)
        await settings(chat, temperature=0.7, seed=1, max_tokens=2000)
        await send(pilot, chat, LONG_PROMPT)
        await wait_for(pilot, lambda: chat.log_view.views and len(chat.log_view.views[-1].text) > 20, "some text")

    drive(store, scenario)
    assert time.monotonic() - started < 60  # 2000 tokens would take far longer
    deadline = time.monotonic() + 10
    while _count(store, "chat_messages") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    conn = sqlite3.connect(store.path)
    timing = conn.execute("SELECT timing FROM chat_messages WHERE role = 'assistant'").fetchone()
    conn.close()
    assert timing is not None and '"stopped": true' in timing[0]
