"""One keymap (issue 16 point 5): every binding has an id, keys.toml overrides keys by id and ? shows the keys
in force; list tables move with j/k, filter with / and sort with o/O; the action dialogs fit 80x24."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import Label
from tui_pilot import SIZE, drive, screen_text, type_text, wait_for

from store.db import Store
from store.projects import create_project
from tui.app import TunedeckApp
from tui.keymap import KeymapError, binding_ids, keys_path, load_keymap, parse_keymap
from tui.screens.artifact import ArtifactScreen
from tui.screens.help import HelpScreen
from tui.screens.jobs import JobsScreen
from tui.screens.projects import ProjectsScreen
from tui.widgets.live_table import LiveTable
from tui.widgets.submit_form import ActionDialog


def _add(store: Store, *names: str) -> None:
    with store.write() as session:
        for name in names:
            create_project(session, name, "")


def _classes_with_bindings() -> list[type]:
    binding_ids()  # imports every screen and widget module
    from textual.dom import DOMNode

    def walk(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *walk(sub))]

    return [c for c in walk(DOMNode) if c.__module__.startswith("tui.") and "BINDINGS" in c.__dict__]


def test_every_binding_has_an_id_and_no_class_binds_a_key_twice() -> None:
    classes = _classes_with_bindings()
    assert len(classes) > 20
    for cls in classes:
        seen: dict[str, str] = {}
        for binding in Binding.make_bindings(cls.__dict__["BINDINGS"]):
            assert binding.id, f"{cls.__name__}: {binding.key} -> {binding.action} has no id"
            assert binding.key not in seen or seen[binding.key] == binding.action, (cls.__name__, binding.key)
            seen[binding.key] = binding.action


def test_table_and_app_keys_are_free_on_the_screens_with_tables() -> None:
    table_keys = {b.key for b in Binding.make_bindings(LiveTable.BINDINGS)} | {"j", "k"}
    app_keys = {"J", "g", "question_mark", "q"}
    from tui.screens.project import ProjectScreen
    from tui.screens.run import RunScreen

    for screen in (ProjectsScreen, JobsScreen, ProjectScreen, RunScreen):
        for binding in Binding.make_bindings(screen.BINDINGS):
            # / finds things everywhere: the projects list's is its table's filter from the whole screen, the
            # run screen's searches its log (with the metrics table focused, / filters the table instead)
            if binding.key == "slash" and screen in (ProjectsScreen, RunScreen):
                continue
            assert binding.key not in table_keys | app_keys, f"{screen.__name__}: {binding.key} is taken"


def test_keys_file_is_found_parsed_and_refused_with_the_entry_named(tmp_path: Path) -> None:
    assert keys_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "tunedeck" / "keys.toml"
    assert keys_path({"HOME": str(tmp_path)}) == tmp_path / ".config" / "tunedeck" / "keys.toml"
    assert load_keymap(tmp_path / "none.toml") == {}
    path = tmp_path / "keys.toml"
    path.write_text('"app.jobs" = "f6"\n[table]\nsort_next = "s, f7"\n', encoding="utf-8")
    assert load_keymap(path) == {"app.jobs": "f6", "table.sort_next": "s,f7"}
    bad = {
        'cancel_run = "x"': "cancel_run: no binding has this id (did you mean run.cancel_run?)",
        '"app.nope" = "x"': "app.nope: no binding has this id (press ? in the app",
        '"app.jobs" = 3': 'app.jobs: expected a key string such as "x" or "ctrl+x,f5", got 3',
        '"app.jobs" = "a,,b"': "app.jobs: expected a key string",
        '"app.jobs" = ': "not valid TOML",
    }
    for text, message in bad.items():
        path.write_text(text, encoding="utf-8")
        with pytest.raises(KeymapError) as error:
            load_keymap(path)
        assert str(error.value).startswith(f"{path}: ") and message in str(error.value), str(error.value)


def test_overridden_keys_work_and_help_shows_them(store: Store) -> None:
    _add(store, "alpha")
    app = TunedeckApp(store, refresh_seconds=0.3, keymap=parse_keymap('"app.jobs" = "f6"\n"jobs.move_up" = "u"'))

    async def main() -> None:
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, lambda: app.screen.query("#projects"), "the projects list")
            await pilot.press("J")  # moved away: J does nothing now
            await pilot.pause(0.2)
            assert isinstance(app.screen, ProjectsScreen)
            await pilot.press("f6")
            await wait_for(pilot, lambda: isinstance(app.screen, JobsScreen), "the jobs screen on f6")
            await pilot.press("question_mark")
            await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
            help_text = " ".join(str(app.screen.query_one("#help-text").visual).split())
            assert "f6 Jobs app.jobs" in help_text and "u Move up jobs.move_up" in help_text
            assert "j Cursor down table.cursor_down" in help_text and "/ Filter table.filter" in help_text
            assert "+ Move up" not in help_text and "J Jobs" not in help_text

    asyncio.run(main())


def test_list_tables_move_filter_and_sort(store: Store) -> None:
    _add(store, "beta", "alpha", "alphabet", "gamma")

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        table = app.screen.query_one("#projects", LiveTable)
        await wait_for(pilot, lambda: len(table.shown) == 4, "four rows")
        table.focus()
        names = lambda: [cells[0] for _, cells in table.shown]  # noqa: E731
        given = names()
        await pilot.press("o")  # by name
        assert names() == sorted(given)
        await wait_for(pilot, lambda: "Name ▲" in screen_text(app), "the sort mark")
        await pilot.press("O")
        assert names() == sorted(given, reverse=True)
        await wait_for(pilot, lambda: "Name ▼" in screen_text(app), "the reversed mark")
        table.move_cursor(row=0)
        await pilot.press("j", "j", "k")
        assert table.cursor_row == 1 and table.current_key == table.shown[1][0]
        await pilot.press("o")  # the datasets count: all 0, kept in a stable order
        assert table.sort_column == 1
        await wait_for(pilot, lambda: "Datasets ▲" in screen_text(app), "the next column's mark")
        await pilot.press("o", "o", "o", "o", "o")  # past the last column: the order the screen gave
        assert table.sort_column is None and names() == given
        await wait_for(pilot, lambda: "▲" not in screen_text(app), "no mark")
        await pilot.press("slash")
        await type_text(pilot, "alp")
        assert sorted(names()) == ["alpha", "alphabet"]
        await pilot.press("escape")
        assert len(names()) == 4 and table.has_focus

    drive(store, scenario)


def _artifact_fields(action: str, kind: str) -> list:
    screen = ArtifactScreen(1)
    artifact = SimpleNamespace(kind=kind, name="run-7-adapter", meta='{"dataset_id": 3}', parent_id=None)
    screen.family = SimpleNamespace(artifact=artifact, nodes={})  # type: ignore[assignment]
    return screen._fields(action)


@pytest.mark.parametrize(("action", "kind"), [("merge", "adapter"), ("convert", "model"), ("eval", "gguf")])
def test_action_dialogs_are_centred_and_show_every_label_at_80x24(store: Store, action: str, kind: str) -> None:
    fields = _artifact_fields(action, kind)

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        app.push_screen(ActionDialog(f"{action.capitalize()} [b]run-7-adapter[/b]", fields, lambda: None))
        await wait_for(pilot, lambda: isinstance(app.screen, ActionDialog), "the dialog")
        await pilot.pause(0.1)
        box = app.screen.query_one("#artifact-action").region
        assert box.x > 0 and box.right <= 80 and box.y > 0 and box.bottom <= 24
        assert abs(box.x - (80 - box.right)) <= 1  # centred
        shown = " ".join(screen_text(app).split())
        for field in fields:
            assert field.label in shown, f"{field.label!r} is cut"
        for label in app.screen.query(Label):
            assert box.contains_region(label.region), label.region

    drive(store, scenario)
