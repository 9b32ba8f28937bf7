"""The TUI shell, driven through Textual's pilot at 80x24 against a real store in tmp_path."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import select
from textual.binding import Binding
from textual.command import CommandPalette
from textual.pilot import Pilot
from textual.widgets import Input, TabbedContent, Tabs
from tui_pilot import drive, text, type_text, wait_for

from store.db import Store, open_store
from store.models import Dataset, Job, Project
from store.projects import create_project, delete_project
from tui.app import TunedeckApp
from tui.screens.dialogs import ConfirmDeleteDialog, NewProjectDialog
from tui.screens.help import HelpScreen
from tui.screens.project import ProjectScreen
from tui.screens.projects import ProjectsScreen
from tui.widgets.live_table import LiveTable

REPO = Path(__file__).resolve().parent.parent


def add_project(store: Store, name: str, description: str = "") -> int:
    with store.write() as session:
        return create_project(session, name, description).id


def add_job(store: Store, project_id: int, kind: str = "train", status: str = "completed") -> int:
    with store.write() as session:
        job = Job(project_id=project_id, kind=kind, name=f"{kind}-1", status=status, step=3, total_steps=10)
        session.add(job)
        session.flush()
        return int(job.id)  # type: ignore[arg-type]


def project_names(store: Store) -> set[str]:
    with store.read() as session:
        return set(session.exec(select(Project.name)).all())


def table_names(app: TunedeckApp) -> list[str]:
    table = app.screen.query_one("#projects", LiveTable)
    return [cells[0] for _, cells in table.shown] if table.display else []


def screen_text(app: TunedeckApp) -> str:
    return app.export_screenshot().replace("&#160;", " ")


async def loaded(app: TunedeckApp, pilot: Pilot) -> None:
    await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen) and app.screen.projects is not None, "load")


def test_create_project_with_n(store: Store) -> None:
    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await loaded(app, pilot)
        assert "No projects yet. Press n to create one, or D for the demo project" in text(app, "#empty")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewProjectDialog), "the form")
        await type_text(pilot, "alpha")
        await pilot.press("tab")
        await type_text(pilot, "first try")
        await pilot.press("enter")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "GuideScreen", "the decision guide")
        await pilot.press("escape")  # skipped (tests/test_tui_guide.py answers it)
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "the form to close")
        await wait_for(pilot, lambda: table_names(app) == ["alpha"], "alpha in the table")
        assert "first try" in text(app, "#detail")
        assert "alpha" in screen_text(app)

    drive(store, scenario)
    with store.read() as session:
        project = session.exec(select(Project)).one()
    assert (project.name, project.description) == ("alpha", "first try")


def test_form_shows_store_errors_inline(store: Store) -> None:
    add_project(store, "alpha")

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await loaded(app, pilot)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewProjectDialog), "the form")
        await type_text(pilot, "alpha")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "already exists" in text(app, "#error"), "the duplicate-name error")
        assert isinstance(app.screen, NewProjectDialog)
        assert app.screen.query_one("#error").display
        name = app.screen.query_one("#name", Input)
        name.value = ""
        await type_text(pilot, "a/b")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "path separator" in text(app, "#error"), "the invalid-name error")
        assert "path separator" in screen_text(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "cancel")

    drive(store, scenario)
    assert project_names(store) == {"alpha"}


def test_open_project_and_switch_tabs(store: Store) -> None:
    pid = add_project(store, "alpha", "the first")
    add_job(store, pid)
    with store.write() as session:
        session.add(Dataset(project_id=pid, name="words", format="chatml", num_train=90, num_val=10))

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: table_names(app) == ["alpha"], "the project row")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "the project screen")
        screen = app.screen
        await wait_for(pilot, lambda: screen.data is not None, "the project load")
        tabs = screen.query_one(TabbedContent)
        assert tabs.active == "datasets"
        assert "the first" in text(app, "#description")
        assert screen.query_one("#datasets-table", LiveTable).display
        for key, tab in [("2", "runs"), ("3", "artifacts"), ("4", "chat"), ("1", "datasets")]:
            await pilot.press(key)
            await wait_for(pilot, lambda tab=tab: tabs.active == tab, f"tab {tab}")
        await pilot.press("2")
        await wait_for(pilot, lambda: tabs.active == "runs", "runs tab")
        runs = screen.query_one("#runs-table", LiveTable)
        assert [cells[1:5] for _, cells in runs.shown] == [("train", "train-1", "completed", "3/10")]
        await pilot.press("3")
        await pilot.pause()
        assert "No artifacts in this project yet" in text(app, "#artifacts-empty")
        assert "No artifacts in this project yet" in screen_text(app)
        # The tab bar switches with left/right once it has focus.
        screen.query_one(Tabs).focus()
        await pilot.press("right")
        await wait_for(pilot, lambda: tabs.active == "chat", "right to chat")
        await pilot.press("left", "left")
        await wait_for(pilot, lambda: tabs.active == "runs", "left to runs")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "back with esc")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "the project screen again")
        await pilot.press("backspace")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "back with backspace")

    drive(store, scenario)


def test_help_lists_the_current_screens_bindings(store: Store) -> None:
    add_project(store, "alpha")

    def described(screen_cls: type) -> set[str]:
        return {b.description for b in Binding.make_bindings(screen_cls.BINDINGS) if b.description}

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: table_names(app) == ["alpha"], "the project row")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        shown = {row.description for row in app.screen.rows}
        assert described(ProjectsScreen) <= shown
        assert {"Help", "Quit", "Command palette"} <= shown
        assert "Datasets tab" not in shown
        svg = screen_text(app)
        assert "Delete" in svg and "Filter" in svg
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "help closed")

        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "the project screen")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "help on the project")
        shown = {row.description for row in app.screen.rows}
        assert described(ProjectScreen) <= shown
        assert {"Back", "Runs tab", "Quit"} <= shown
        assert "New" not in shown
        await pilot.press("question_mark")  # ? closes help too (q quits, on help as everywhere)
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "help closed with ?")
        assert app.is_running

    drive(store, scenario)


def test_delete_asks_first(store: Store) -> None:
    add_project(store, "alpha")
    add_project(store, "beta")

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: table_names(app) == ["beta", "alpha"], "two rows")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDeleteDialog), "the confirmation")
        assert "beta" in text(app, "#confirm-body")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "kept")
        assert project_names(store) == {"alpha", "beta"}
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDeleteDialog), "the confirmation again")
        await pilot.press("y")
        await wait_for(pilot, lambda: table_names(app) == ["alpha"], "beta gone from the table")

    drive(store, scenario)
    assert project_names(store) == {"alpha"}


def test_delete_project_with_runs_needs_force(store: Store) -> None:
    job = add_job(store, add_project(store, "alpha"))
    checkpoint = store.home / "jobs" / str(job) / "checkpoints" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    (checkpoint / "optimizer.pt").write_bytes(b"\0" * 1024)

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: table_names(app) == ["alpha"], "the row")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDeleteDialog), "the confirmation")
        assert "1 run(s)" in text(app, "#confirm-body")
        assert "f delete with runs" in screen_text(app)
        await pilot.press("y")  # not enough for a project with runs
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDeleteDialog)
        assert "press f" in text(app, "#confirm-note")
        assert project_names(store) == {"alpha"}
        await pilot.press("f")
        await wait_for(pilot, lambda: table_names(app) == [], "alpha deleted with its run")
        assert "No projects yet" in text(app, "#empty")

    drive(store, scenario)
    assert project_names(store) == set()
    assert not (store.home / "jobs" / str(job)).exists()  # its files go with it; a new job may get its id


def test_refused_delete_is_a_notification(store: Store, home: Path) -> None:
    pid = add_project(store, "alpha")

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: table_names(app) == ["alpha"], "the row")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDeleteDialog), "the confirmation")
        other = open_store(home)  # a job gets queued from elsewhere while the dialog is open
        add_job(other, pid, status="queued")
        other.close()
        await pilot.press("y")
        await wait_for(pilot, lambda: any("cancel them first" in n.message for n in app._notifications), "notice")
        assert isinstance(app.screen, ProjectsScreen)
        assert app.is_running

    drive(store, scenario)
    assert project_names(store) == {"alpha"}


def test_filter_with_slash(store: Store) -> None:
    for name in ("alpha", "beta", "alphabet"):
        add_project(store, name)

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: len(table_names(app)) == 3, "three rows")
        await pilot.press("slash")
        box = app.screen.query_one("#filter", Input)
        assert box.display and box.has_focus
        await type_text(pilot, "alp")
        await wait_for(pilot, lambda: sorted(table_names(app)) == ["alpha", "alphabet"], "filtered rows")
        await type_text(pilot, "q")  # a q in the filter box types a q
        await wait_for(pilot, lambda: "No project matches 'alpq'" in text(app, "#empty"), "no match")
        assert app.is_running and box.value == "alpq"
        await pilot.press("backspace", "h", "a", "b", "enter")  # enter opens the highlighted match
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "the project screen")
        assert app.screen.project_name == "alphabet"
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "back")
        await pilot.press("escape")  # clears and hides the filter
        await wait_for(pilot, lambda: len(table_names(app)) == 3, "all rows again")
        assert not box.display and box.value == ""

    drive(store, scenario)


def test_outside_changes_appear_without_a_key(store: Store, home: Path) -> None:
    add_project(store, "alpha")
    beta = add_project(store, "beta")

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: table_names(app) == ["beta", "alpha"], "two rows")
        await pilot.press("down")  # cursor on alpha
        table = app.screen.query_one("#projects", LiveTable)
        assert table.current_key is not None
        cli = open_store(home)  # like the CLI in another process would
        add_project(cli, "gamma")
        await wait_for(pilot, lambda: table_names(app) == ["gamma", "beta", "alpha"], "gamma from outside")
        assert app.screen.current_project.name == "alpha"  # the cursor stayed on its row
        await pilot.press("up")
        await wait_for(pilot, lambda: app.screen.current_project.name == "beta", "cursor on beta")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "beta's screen")
        await pilot.press("2")
        add_job(cli, beta, kind="train", status="running")
        runs = app.screen.query_one("#runs-table", LiveTable)
        await wait_for(pilot, lambda: [c[1] for _, c in runs.shown] == ["train"], "the run from outside")
        cli.close()

    drive(store, scenario)


def test_command_palette_offers_the_screen_actions(store: Store) -> None:
    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await loaded(app, pilot)
        await pilot.press("ctrl+p")
        await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), "palette")
        await type_text(pilot, "new")
        await pilot.pause(0.3)
        await pilot.press("down", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, NewProjectDialog), "the new-project form")
        await pilot.press("q", "escape")  # q types into the name box
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "back")
        assert app.is_running

    drive(store, scenario)


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
def test_quit_keys_end_the_app(store: Store, key: str) -> None:
    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await loaded(app, pilot)
        if key == "ctrl+c":  # ctrl+c quits even from a text box
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, NewProjectDialog), "the form")
        await pilot.press(key)
        await wait_for(pilot, lambda: not app.is_running, "the app to exit")

    app = drive(store, scenario)
    assert app.return_code == 0


def test_tui_start_up_imports_nothing_heavy() -> None:
    code = (
        "import sys, pkgutil, importlib, tui.app, tui.screens\n"
        "for m in pkgutil.iter_modules(tui.screens.__path__): importlib.import_module('tui.screens.' + m.name)\n"
        "heavy = ('torch', 'transformers', 'peft', 'trl', 'llama_cpp', 'engine')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_project_deleted_elsewhere_goes_back(store: Store, home: Path) -> None:
    add_project(store, "alpha")

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: table_names(app) == ["alpha"], "the row")
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "the project screen")
        cli = open_store(home)
        with cli.write() as session:
            delete_project(session, "alpha")
        cli.close()
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "back to the list")
        await wait_for(pilot, lambda: table_names(app) == [], "the list without alpha")

    drive(store, scenario)


def test_digit_key_focuses_the_tabs_rows_after_an_empty_tab(store: Store) -> None:
    """An empty Datasets tab leaves focus on the tab bar; pressing 2 must still put it on the runs."""
    add_job(store, add_project(store, "solo"))

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await loaded(app, pilot)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen) and app.screen.data, "project screen")
        await pilot.press("2")
        await wait_for(pilot, lambda: isinstance(app.focused, LiveTable) and app.focused.id == "runs-table",
                       "focus on the runs table")

    drive(store, scenario)
