"""The decision guide (issue 16 point 7): the optional first step of a new project, its verdict stored on the
project and shown on the project screen."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import Checkbox
from tui_pilot import drive, screen_text, text, type_text, wait_for

from store.db import Store
from store.projects import get_project
from tui.app import TunedeckApp
from tui.screens.guide import CHECKLIST, QUESTIONS, GuideScreen, guide_verdict
from tui.screens.project import ProjectScreen
from tui.screens.projects import ProjectsScreen
from tui.widgets.guide_text import guide_summary


def test_verdicts_follow_the_questions() -> None:
    assert guide_verdict({}) == "prompting"
    assert guide_verdict({"new_behaviour": True}) == "fine-tune"
    assert guide_verdict({"changing_knowledge": True}) == "rag"
    assert guide_verdict({"changing_knowledge": True, "new_behaviour": True}) == "fine-tune"
    assert guide_verdict({"prompt_works": True, "new_behaviour": True}) == "prompting"  # the cheapest that works
    assert guide_summary({}) == ""
    assert guide_summary({"verdict": "rag", "checklist": {"pii": True, "licence": False}}) == (
        "guide: rag · data checklist: 1 open")


async def _new_project(app: TunedeckApp, pilot: Pilot, name: str) -> GuideScreen:
    await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "the projects list")
    await pilot.press("n")
    await type_text(pilot, name)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, GuideScreen), "the decision guide")
    return app.screen  # type: ignore[return-value]


def test_guide_after_a_new_project_stores_its_verdict_and_the_project_screen_shows_it(store: Store) -> None:
    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        guide = await _new_project(app, pilot, "support-bot")
        await wait_for(pilot, lambda: "Data checklist" in screen_text(app), "the guide drawn")
        shown = " ".join(screen_text(app).split())
        for _, label in QUESTIONS + CHECKLIST:  # every line whole at 80x24
            assert label in shown, label
        assert "→ prompting" in text(app, "#guide-verdict")
        guide.query_one("#q-new_behaviour", Checkbox).focus()
        await pilot.press("space")
        await wait_for(pilot, lambda: "→ fine-tune" in text(app, "#guide-verdict"), "the verdict follows")
        assert "5 checklist item(s) open" in text(app, "#guide-verdict")
        for key in ("enough_examples", "held_out", "pii"):
            guide.query_one(f"#c-{key}", Checkbox).value = True
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "saved and closed")
        app.push_screen(ProjectScreen("support-bot"))
        await wait_for(pilot, lambda: app.screen.query("#description"), "the project screen")
        await wait_for(pilot, lambda: "guide: fine-tune · data checklist: 2 open" in text(app, "#description"),
                       "the verdict on the project screen")  # fmt: skip

    drive(store, scenario)
    with store.read() as session:
        stored = get_project(session, "support-bot").guide
    assert stored["verdict"] == "fine-tune" and stored["answers"]["new_behaviour"] is True
    assert stored["checklist"] == {"enough_examples": True, "held_out": True, "licence": False, "pii": True,
                                   "format": False}  # fmt: skip


def test_guide_is_skipped_with_escape(store: Store) -> None:
    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await _new_project(app, pilot, "later")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectsScreen), "skipped")
        app.push_screen(ProjectScreen("later"))
        await wait_for(pilot, lambda: app.screen.query("#description"), "the project screen")
        await wait_for(pilot, lambda: "no description" in text(app, "#description"), "the project screen")
        assert "guide:" not in text(app, "#description")

    drive(store, scenario)
    with store.read() as session:
        assert get_project(session, "later").guide == {}
