"""The forms' defaults (issue 16 point 6): the New Run form never defaults to a dataset whose lint failed."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import Select
from tui_pilot import drive, text, wait_for

from store.db import Store
from store.models import Dataset
from store.projects import create_project
from tui.app import TunedeckApp
from tui.screens.new_run import NewRunForm


def _datasets(store: Store, verdicts: list[str]) -> None:
    """A project `p` with one dataset per verdict, oldest first (the form lists the newest first)."""
    with store.write() as session:
        pid = create_project(session, "p", "").id
        for i, verdict in enumerate(verdicts):
            session.add(Dataset(project_id=pid, name=f"d{i}-{verdict}", format="chat", num_train=10,
                                lint={"verdict": verdict, "checklist": []}))  # fmt: skip


def _open(store: Store, check) -> None:
    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        app.push_screen(NewRunForm(store, "p"))
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunForm) and app.screen.checked is not None,
                       "the form", timeout=20)  # fmt: skip
        check(app, app.screen.query_one("#dataset", Select))

    drive(store, scenario)


def test_new_run_form_skips_a_newest_dataset_whose_lint_failed(store: Store) -> None:
    _datasets(store, ["ok", "warn", "fail"])

    def check(app: TunedeckApp, select: Select) -> None:
        assert select.value == "d1-warn"  # the newest that did not fail
        assert "lint failed, not chosen by default: d2-fail" in text(app, "#dataset-hint")

    _open(store, check)


def test_new_run_form_chooses_no_dataset_when_every_one_failed(store: Store) -> None:
    _datasets(store, ["fail", "fail"])

    def check(app: TunedeckApp, select: Select) -> None:
        assert select.value is Select.NULL
        assert "every dataset failed its lint" in text(app, "#dataset-hint")

    _open(store, check)


def test_new_chat_form_offers_the_projects_ggufs(store: Store, tmp_path) -> None:
    from textual.widgets import Input

    from store.models import Artifact
    from tui.screens.chat_new import NewChatDialog
    from tui.screens.project import gguf_choices

    with store.write() as session:
        pid = create_project(session, "p", "").id
        for name, kind in (("base", "model"), ("run-1-f16", "gguf"), ("run-1-f16-q4_k_m", "gguf")):
            session.add(Artifact(project_id=pid, kind=kind, name=name, path=str(tmp_path / name), size=2048))
    with store.raw() as conn:
        from store.views import project_contents

        choices = gguf_choices(project_contents(conn, "p").artifacts)
    assert [label.split(" · ")[0] for label, _ in choices] == ["run-1-f16-q4_k_m", "run-1-f16"]

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        results: list[object] = []
        await app.push_screen(NewChatDialog(choices), results.append)
        dialog = app.screen
        pick = dialog.query_one("#pick", Select)
        model = dialog.query_one("#model", Input)
        assert pick.value == choices[0][1] and model.value == choices[0][1] and model.has_focus
        pick.value = choices[1][1]
        await wait_for(pilot, lambda: model.value == choices[1][1], "the picked GGUF in the model box")
        await pilot.press("enter")
        await wait_for(pilot, lambda: results, "the form's result")
        assert results[0].model == choices[1][1]  # type: ignore[attr-defined]

    drive(store, scenario)


def test_empty_projects_screen_makes_the_demo_on_D_without_blocking(store: Store, monkeypatch, tmp_path) -> None:
    import time

    from tui.screens.help import HelpScreen
    from tui.screens.projects import ProjectsScreen

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await wait_for(pilot, lambda: "D for the demo project" in text(app, "#empty"), "the empty list's offer")
        started = time.monotonic()
        await pilot.press("D")
        await pilot.press("question_mark")  # the UI answers while the demo is being built
        # Building the demo in the UI's own thread would hold the screen for its whole build (~10-30 s); a few
        # seconds leave room for a loaded machine (the suite's other worker) without letting that pass.
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "help, at once", timeout=5)
        assert time.monotonic() - started < 5
        await pilot.press("escape")
        screen: ProjectsScreen = app.screen  # type: ignore[assignment]
        await wait_for(pilot, lambda: screen.projects and screen.projects[0].name == "demo", "the demo project",
                       timeout=90)  # fmt: skip
        await wait_for(pilot, lambda: "its dataset imports as job" in "\n".join(n.message for n in app._notifications),
                       "the note naming the import job")  # fmt: skip

    drive(store, scenario)
    with store.raw() as conn:
        kinds = [r[0] for r in conn.execute("SELECT kind FROM jobs")]
        artifacts = sorted(r[0] for r in conn.execute("SELECT kind FROM artifacts"))
    assert kinds == ["dataset-import"] and artifacts == ["data", "model"]
