"""The Datasets tab, the import dialog and the dataset screen, at 80x24 against a real store.

Imports go through the real engine: the dialog queues a job and a detached runner imports.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.binding import Binding
from textual.pilot import Pilot
from textual.widgets import Input, Select, Static, TabbedContent
from tui_pilot import drive, notes, screen_text, text, type_text, wait_for

from engine.datasets.lint_report import mask_text, report_renderable
from store.db import Store, open_store
from store.models import Dataset, Job
from store.projects import create_project
from tui.app import TunedeckApp
from tui.screens.datasets import DatasetScreen
from tui.screens.help import HelpScreen
from tui.screens.import_dialog import ImportDialog, ImportErrorDialog
from tui.screens.project import ProjectScreen
from tui.widgets.dataset_files import flags_from_report, index_split
from tui.widgets.histogram import Bin, HistogramBars, bar_text, histogram_lines
from tui.widgets.live_table import LiveTable
from tui.widgets.path_input import PathInput, path_candidates
from tui.widgets.record_view import PreviewBody, record_turns, turn_widget

IMPORT_TIMEOUT = 60.0
TOPICS = ["tides", "volcanoes", "bread", "chess", "orbits", "moss", "glaciers", "violins", "bees", "rust",
          "maps", "owls", "salt", "kites", "coral", "ink", "dunes", "tea", "clocks", "ferns"]  # fmt: skip
EMAIL = "jane.doe@example.com"


@pytest.fixture
def store(home: Path):
    s = open_store(home)
    with s.write() as session:
        create_project(session, "alpha", "")
    yield s
    s.close()


def chat_rows(n: int, email_at: int | None = None) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append({"messages": [
            {"role": "user", "content": f"Tell me fact {i} about {topic} and why {i * 7} matters there."},
            {"role": "assistant", "content": f"{topic.title()} fact {i}: it took {i * 13 + 5} years, roughly."},
        ]})  # fmt: skip
    if email_at is not None:
        rows[email_at]["messages"][0]["content"] += f" Reply to {EMAIL} please."
    return rows


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


async def enter_path(pilot: Pilot, box: Input, path: str, typed: int = 4) -> None:
    """Put `path` in `box`: all but its last `typed` characters at once, those by key
    (each key press costs the pilot a wait for idle, and tmp paths are long)."""
    if not box.has_focus:
        box.focus()
        await pilot.pause()
    box.value = path[: len(path) - typed]
    box.cursor_position = len(box.value)
    await type_text(pilot, path[len(path) - typed :])


async def open_project(app: TunedeckApp, pilot: Pilot) -> ProjectScreen:
    await wait_for(pilot, lambda: app.screen.query("#projects") and app.screen.projects, "the projects list")
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen) and app.screen.data is not None, "project")
    return app.screen  # type: ignore[return-value]


def dataset_items(screen: ProjectScreen, kind: str = "dataset") -> dict[str, Any]:
    return {i.name: i for i in (screen.data.datasets.values() if screen.data else ()) if i.kind == kind}


async def open_dialog(app: TunedeckApp, pilot: Pilot) -> ImportDialog:
    await pilot.press("i")
    await wait_for(pilot, lambda: isinstance(app.screen, ImportDialog), "the import dialog")
    return app.screen  # type: ignore[return-value]


async def open_dataset(app: TunedeckApp, pilot: Pilot, project: ProjectScreen, name: str) -> DatasetScreen:
    table = project.query_one("#datasets-table", LiveTable)
    key = next(k for k, item in project.data.datasets.items() if item.kind == "dataset" and item.name == name)
    table.move_cursor(row=[k for k, _ in table.shown].index(key))
    table.focus()
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(app.screen, DatasetScreen) and app.screen.data is not None, "dataset")
    return app.screen  # type: ignore[return-value]


async def preview_shows(pilot: Pilot, screen: DatasetScreen, what: str) -> None:
    """Wait until the preview's page is drawn (its record read and its turns mounted)."""
    await wait_for(pilot, lambda: screen.record is not None and screen.query(".turn"), what)


def rendered(renderable: Any) -> str:
    console = Console(width=78, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def preview_text(screen: DatasetScreen) -> str:
    return "\n".join(str(turn.visual) for turn in screen.query_one(PreviewBody).query(".turn"))


# ----------------------------------------------------------------------------- tests


def test_import_through_the_dialog_then_browse_it(store: Store, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "facts.jsonl", chat_rows(40, email_at=5))

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        project = await open_project(app, pilot)
        assert "Press i to import a dataset" in text(app, "#datasets-empty")
        dialog = await open_dialog(app, pilot)
        source = dialog.query_one("#source", PathInput)
        await enter_path(pilot, source, str(tmp_path / "fa"))
        await wait_for(pilot, lambda: source.completion == str(src), "the completion")
        await pilot.press("tab")  # takes the completion
        assert source.value == str(src)
        assert dialog.query_one("#name", Input).placeholder == "default: facts"
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "the dialog to close")
        assert "Import queued as job" in notes(app)
        await wait_for(pilot, lambda: "facts" in dataset_items(project), "the imported dataset", IMPORT_TIMEOUT)
        await wait_for(pilot, lambda: "Imported dataset facts" in notes(app), "the import's notice")
        table = project.query_one("#datasets-table", LiveTable)
        (cells,) = [cells for _, cells in table.shown if cells[0] == "facts"]
        assert cells[1:4] == ("chat", "36", "4") and "✗ fail" in cells[4]  # 40 examples: too few
        assert table.current_key == str(dataset_items(project)["facts"].id)  # the cursor followed the import

        screen = await open_dataset(app, pilot, project, "facts")
        assert screen.query_one("#dataset-tabs", TabbedContent).active == "report"
        shown = screen_text(app)
        assert "FAIL" in shown and "Checklist" in shown and "only 36 training examples" in shown
        report = rendered(report_renderable(screen.data.report))
        assert "e***" in report and EMAIL not in report  # PII samples only redacted
        assert "e.g. j***@e***.com" in report or "j***" in report
        assert "Token lengths were not measured" in text(app, "#tokens-text")

        await pilot.press("3")
        await preview_shows(pilot, screen, "the first page")
        assert "record 1 of 36" in text(app, "#preview-bar")
        first = screen.record
        await pilot.press("right_square_bracket")
        await wait_for(pilot, lambda: "record 2 of 36" in text(app, "#preview-bar"), "page 2")
        await wait_for(pilot, lambda: screen.record is not None and screen.record != first, "page 2's record")
        assert {"role-user", "role-assistant"} <= {c for t in screen.query(".turn") for c in t.classes}
        await pilot.press("pagedown", "pagedown", "pageup")
        await wait_for(pilot, lambda: "record 3 of 36" in text(app, "#preview-bar"), "page 3")
        await pilot.press("left_square_bracket")
        await wait_for(pilot, lambda: "record 2 of 36" in text(app, "#preview-bar"), "back to page 2")

        await pilot.press("f", "f")
        assert screen.filter == "pii"
        flagged: dict[str, list[int]] = {}
        for split in ("train", "val"):
            if screen.split != split:
                await pilot.press("t")
            await wait_for(pilot, lambda split=split: screen.index is not None and screen.split == split, split)
            flagged[split] = screen.current_ids
            if screen.current_ids:
                await preview_shows(pilot, screen, "the flagged record")
                assert EMAIL in preview_text(screen)
                assert "record 1 of 1" in text(app, "#preview-bar")
            else:
                await wait_for(pilot, lambda: "No PII records" in screen_text(app), "the empty filter's note")
        assert sorted(flagged["train"] + flagged["val"]) == [5]
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "back to the project")

    drive(store, scenario)


def test_tokens_tab_draws_the_histogram(store: Store, tmp_path: Path, demo_model_dir: Path) -> None:
    src = write_jsonl(tmp_path / "long.jsonl", chat_rows(30))

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        project = await open_project(app, pilot)
        dialog = await open_dialog(app, pilot)
        await enter_path(pilot, dialog.query_one("#source", Input), str(src))
        dialog.query_one("#max-length", Input).focus()
        dialog.query_one("#max-length", Input).clear()
        await type_text(pilot, "60")
        dialog.query_one("#tokenizer", Input).focus()
        await enter_path(pilot, dialog.query_one("#tokenizer", Input), str(demo_model_dir))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "the dialog to close")
        await wait_for(pilot, lambda: "long" in dataset_items(project), "the imported dataset", IMPORT_TIMEOUT)
        screen = await open_dataset(app, pilot, project, "long")
        tokens = screen.data.report["tokens"]
        await pilot.press("2")
        await wait_for(pilot, lambda: screen.query_one(HistogramBars).display, "the histogram")
        chart = screen.query_one(HistogramBars)
        assert [(b.lo, b.hi, b.count) for b in chart.bins] == [(h["lo"], h["hi"], h["count"]) for h in
                                                               tokens["histogram"]]  # fmt: skip
        assert chart.limit == 60
        shown = screen_text(app)
        assert "median" in shown and "p95" in shown and "█" in shown
        assert f"{tokens['histogram'][0]['lo']}-{tokens['histogram'][0]['hi']}" in shown
        summary = text(app, "#tokens-text")
        if tokens["over_max"]:
            assert f"{tokens['over_max']} example" in summary and "exceed max_length 60" in summary
            assert "too-long filter" in summary
        else:
            assert "every example fits max_length 60" in summary
        # the too-long filter shows exactly the examples over max_length (both splits)
        await pilot.press("3", "f", "f", "f")
        assert screen.filter == "too_long"
        seen = []
        for _ in ("train", "val"):
            await wait_for(pilot, lambda: screen.index is not None, "the split's index")
            seen += screen.current_ids
            await pilot.press("t")
        assert sorted(seen) == sorted(tokens["over_max_ids"])

    drive(store, scenario)


def test_failed_import_shows_its_located_errors(store: Store, tmp_path: Path) -> None:
    rows: list[Any] = chat_rows(3)
    rows[1] = '{"messages": [{"role": "user", "content": "hi"}'  # truncated JSON on line 2
    rows[2] = {"messages": [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "x"}]}
    src = write_jsonl(tmp_path / "broken.jsonl", rows)

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        project = await open_project(app, pilot)
        dialog = await open_dialog(app, pilot)
        await enter_path(pilot, dialog.query_one("#source", Input), str(src))
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "the dialog to close")
        await wait_for(pilot, lambda: "broken" in dataset_items(project, "failed"), "the failed import", IMPORT_TIMEOUT)
        await wait_for(pilot, lambda: f"{src}:3: messages[0].role" in notes(app), "the failure notice")
        table = project.query_one("#datasets-table", LiveTable)
        assert [cells[0] for _, cells in table.shown] == ["broken"]
        assert "✗ failed" in table.shown[0][1][4]
        detail = text(app, "#datasets-detail")
        assert f"{src}:2: invalid JSON" in detail and "enter shows the whole error" in detail
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ImportErrorDialog), "the error box")
        error = text(app, "#import-error-text")
        assert f"{src}:2: invalid JSON" in error and f"{src}:3: messages[0].role: unknown role 'robot'" in error
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "the error box to close")

    drive(store, scenario)


def test_dialog_checks_its_fields_inline(store: Store, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "ok.jsonl", chat_rows(3))

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await open_project(app, pilot)
        dialog = await open_dialog(app, pilot)
        error = dialog.query_one("#error", Static)
        assert not error.display
        await pilot.press("enter")
        await wait_for(pilot, lambda: "source: give the path" in text(app, "#error"), "the missing-source error")
        await enter_path(pilot, dialog.query_one("#source", Input), str(src))
        fraction = dialog.query_one("#val-fraction", Input)
        fraction.focus()
        fraction.clear()
        await type_text(pilot, "ten")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "val fraction: 'ten' is not a number" in text(app, "#error"), "the error")
        assert isinstance(app.screen, ImportDialog) and error.display and fraction.has_focus
        assert "is not a number" in screen_text(app)
        fraction.clear()
        await type_text(pilot, "1.5")
        await pilot.press("enter")
        await wait_for(pilot, lambda: "below 1" in text(app, "#error"), "the range error")
        fraction.clear()
        await type_text(pilot, "0.2")
        dialog.query_one("#source", Input).clear()
        dialog.query_one("#source", Input).focus()
        await enter_path(pilot, dialog.query_one("#source", Input), str(tmp_path / "nope.jsonl"))
        await pilot.press("enter")  # the engine's own check, shown in the form too
        await wait_for(pilot, lambda: "no such file or directory" in text(app, "#error"), "queue_import's error")
        assert isinstance(app.screen, ImportDialog)
        # an open list takes enter for its choice; enter on a closed one imports
        select = dialog.query_one("#format", Select)
        select.focus()
        await pilot.press("space")
        await wait_for(pilot, lambda: select.expanded, "the format list")
        await pilot.press("down", "down", "enter")
        await wait_for(pilot, lambda: not select.expanded, "the list to close")
        assert select.value == "chat" and isinstance(app.screen, ImportDialog)
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "cancel")

    drive(store, scenario)
    with store.raw() as conn:
        assert conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0


def test_path_completion(store: Store, tmp_path: Path) -> None:
    files = tmp_path / "files"
    (files / "data").mkdir(parents=True)
    for name in ("chat.jsonl", "chart.csv", "notes.txt", ".secret.jsonl"):
        (files / name).write_text("{}\n")
    base = f"{files}/"
    assert path_candidates(base + "c") == [base + "chart.csv", base + "chat.jsonl"]
    assert path_candidates(base) == [base + "data/", base + "chart.csv", base + "chat.jsonl"]
    assert path_candidates(base + ".s") == [base + ".secret.jsonl"]
    assert path_candidates(base + "n") == []  # not a data file

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        await open_project(app, pilot)
        dialog = await open_dialog(app, pilot)
        source = dialog.query_one("#source", PathInput)
        await enter_path(pilot, source, base + "cha")
        await wait_for(pilot, lambda: source.completion == base + "chart.csv", "the first completion")
        assert "chart.csv  chat.jsonl" in text(app, "#source-matches")
        await type_text(pilot, "t")
        await wait_for(pilot, lambda: source.completion == base + "chat.jsonl", "the completion of chat")
        await pilot.press("right")  # right at the end takes it too
        assert source.value == base + "chat.jsonl"
        await pilot.press("tab")  # nothing left to complete: the next field
        assert dialog.query_one("#name", Input).has_focus
        source.focus()
        source.clear()
        await enter_path(pilot, source, base + "d", typed=1)
        await wait_for(pilot, lambda: source.completion == base + "data/", "a folder")
        await pilot.press("tab")
        assert source.value == base + "data/" and source.has_focus

    drive(store, scenario)


def _snapshot(folder: Path, n_train: int, n_val: int, flags: dict[str, list[int]] | None) -> None:
    """A hand-made snapshot: ids 0..n-1, every 9th one in val; a report without token lengths."""
    folder.mkdir(parents=True)
    ids = list(range(n_train + n_val))
    val = set(ids[::9][:n_val])
    train = [i for i in ids if i not in val][:n_train]

    def record(i: int) -> dict[str, Any]:
        return {"id": i, "messages": [{"role": "system", "content": "be brief"},
                                      {"role": "user", "content": f"question #{i}"},
                                      {"role": "assistant", "content": f"answer #{i}"}]}  # fmt: skip

    write_jsonl(folder / "train.jsonl", [json.dumps(record(i), separators=(",", ":")) for i in train])
    write_jsonl(folder / "val.jsonl", [json.dumps(record(i), separators=(",", ":")) for i in sorted(val)])
    report = {"format": "chat", "kind": "sft", "verdict": "warn",
              "counts": {"train": len(train), "val": len(val), "total": len(ids), "dropped": {}},
              "checklist": [{"check": "size", "status": "warn", "detail": "250 training examples"}],
              "tokens": {"skipped": "no tokenizer given"}, "label_mask": {"skipped": "no tokenizer given"},
              "pii": {"email": {"count": 1, "examples": 1, "ids": [7], "samples": ["a***@b***.org"]}}}  # fmt: skip
    (folder / "report.json").write_text(json.dumps(report))
    if flags is not None:
        (folder / "flags.json").write_text(json.dumps(flags))


def _add_dataset(store: Store, name: str, path: Path | str, n_train: int = 0, n_val: int = 0) -> int:
    with store.write() as session:
        row = Dataset(project_id=1, name=name, format="chat", path=str(path), num_train=n_train, num_val=n_val,
                      lint={"verdict": "warn", "checklist": []})  # fmt: skip
        session.add(row)
        session.flush()
        return row.id


def test_preview_pages_lazily_and_filters_by_flags_json(store: Store, tmp_path: Path) -> None:
    flags = {"exact_duplicate": [10, 12], "near_duplicate": [12, 40], "pii": [7], "too_long": [3, 100, 200],
             "masked_out": []}  # fmt: skip
    _snapshot(tmp_path / "snap", 225, 25, flags)
    _add_dataset(store, "hand", tmp_path / "snap", 225, 25)
    index = index_split(tmp_path / "snap", "train")
    assert len(index) == 225 and index.ids[:3].tolist() == [1, 2, 3]

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        project = await open_project(app, pilot)
        cells = project.query_one("#datasets-table", LiveTable).shown[0][1]
        assert "! warn" in cells[4]
        screen = await open_dataset(app, pilot, project, "hand")
        assert "Token lengths were not measured" in text(app, "#tokens-text")
        await pilot.press("3")
        await preview_shows(pilot, screen, "page 1")
        assert "record 1 of 225 · id 1" in text(app, "#preview-bar")
        assert [str(t.visual).split("\n")[0] for t in screen.query(".turn")] == ["system", "user", "assistant"]
        await pilot.press("G")
        await wait_for(pilot, lambda: "record 225 of 225" in text(app, "#preview-bar"), "the last page")
        await pilot.press("right_square_bracket")  # stays on the last page
        assert "record 225 of 225" in text(app, "#preview-bar")
        await pilot.press("g")
        await wait_for(pilot, lambda: "record 1 of 225" in text(app, "#preview-bar"), "the first page")
        for _ in range(3):
            await pilot.press("pagedown")
        await wait_for(pilot, lambda: screen.record is not None and screen.record["id"] == 4, "record 4")
        assert "question #4" in preview_text(screen)

        await pilot.press("f")  # duplicates: exact and near
        assert screen.filter == "duplicates"
        assert screen.current_ids == [10, 12, 40]
        bar = text(app, "#preview-bar")
        assert "duplicates 3" in bar and "PII 1" in bar and "too long 3" in bar and "masked-out 0" in bar
        assert "first ids from the report" not in bar  # flags.json is complete
        await wait_for(pilot, lambda: screen.record is not None and screen.record["id"] == 10, "the first dup")
        await pilot.press("f", "f")
        assert screen.filter == "too_long" and screen.current_ids == [3, 100, 200]
        await pilot.press("f")
        assert screen.filter == "masked_out"
        await wait_for(pilot, lambda: "No masked-out records in the train split" in screen_text(app), "empty")
        await pilot.press("F", "F", "F")
        assert screen.filter == "duplicates"
        await pilot.press("t")
        await wait_for(pilot, lambda: screen.split == "val" and screen.index is not None, "the val split")
        assert screen.current_ids == []  # 10, 12 and 40 are all in train
        await pilot.press("f", "f", "f", "f")
        assert screen.filter == "all"
        await preview_shows(pilot, screen, "val's first page")
        assert "record 1 of 25 · id 0" in text(app, "#preview-bar")

    drive(store, scenario)


def test_flags_fall_back_to_the_report() -> None:
    report = {
        "duplicates": {"exact": {"examples": [{"ids": [4, 9]}]}, "near": {"examples": [{"ids": [2, 3]}]}},
        "pii": {"email": {"ids": [1]}, "phone": {"ids": [1, 6]}},
        "tokens": {"over_max_ids": [8]},
        "structure": {"issues": {"no_assistant_turn": {"ids": [5]}}},
    }
    assert flags_from_report(report) == {"duplicates": {2, 3, 4, 9}, "pii": {1, 6}, "too_long": {8},
                                         "masked_out": {5}}  # fmt: skip
    assert flags_from_report({}) == {"duplicates": set(), "pii": set(), "too_long": set(), "masked_out": set()}


def test_dataset_without_a_snapshot_and_its_help(store: Store) -> None:
    _add_dataset(store, "ghost", "")

    def described(screen_cls: type) -> set[str]:
        return {b.description for b in Binding.make_bindings(screen_cls.BINDINGS) if b.description}

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        project = await open_project(app, pilot)
        screen = await open_dataset(app, pilot, project, "ghost")
        await wait_for(pilot, lambda: "snapshot folder" in text(app, "#report-text"), "the missing-folder note")
        await pilot.press("3")
        await wait_for(pilot, lambda: "snapshot folder" in screen_text(app), "the note on the preview")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), "help")
        shown = {row.description for row in app.screen.rows}
        assert described(DatasetScreen) <= shown
        assert {"Next record", "Previous record", "Filter", "Train/val", "Back"} <= shown
        help_text = screen_text(app)
        previous = [line for line in help_text.splitlines() if "Previous record" in line]
        assert previous and "[ / pgup" in previous[0]
        assert "[/]" not in help_text  # the "[" key must not break the help's markup
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is screen, "help closed")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "back")

    drive(store, scenario)


def test_imports_in_progress_show_and_their_end_is_announced(store: Store, home: Path) -> None:
    with store.write() as session:
        session.add(Job(project_id=1, kind="dataset-import", name="big", status="running", progress=0.4))

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        project = await open_project(app, pilot)
        await wait_for(pilot, lambda: "big" in dataset_items(project, "import"), "the import row")
        table = project.query_one("#datasets-table", LiveTable)
        assert table.shown[0][0] == "job-1" and "40%" in table.shown[0][1][4]
        assert "Importing big (job 1): 40% done" in text(app, "#datasets-detail")
        await pilot.press("enter")
        assert "still importing" in notes(app)
        other = open_store(home)  # the runner, elsewhere
        with other.write() as session:
            job = session.get(Job, 1)
            job.status, job.error = "failed", "big.jsonl: 1 error in 1 of 9 records:\n  big.jsonl:7: text: empty"
            session.add(job)
        other.close()
        await wait_for(pilot, lambda: "big.jsonl:7: text: empty" in notes(app), "the failure notice")
        await wait_for(pilot, lambda: "✗ failed" in table.shown[0][1][4], "the failed row")

    drive(store, scenario)


def test_records_render_as_turns_and_charts_as_bars() -> None:
    chat = {"id": 1, "messages": [{"role": "user", "content": "hi [b]not markup[/b]"},
                                  {"role": "assistant", "content": ""}]}  # fmt: skip
    assert record_turns(chat) == [("user", "user", "hi [b]not markup[/b]"), ("assistant", "assistant", "")]
    pref = {"id": 2, "prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "good"}],
            "rejected": [{"role": "assistant", "content": "bad"}]}  # fmt: skip
    assert [(label, style) for label, style, _ in record_turns(pref)] == [
        ("prompt · user", "user"), ("chosen · assistant", "chosen"), ("rejected · assistant", "rejected")]
    assert record_turns({"id": 3, "text": "plain"}) == [("text", "text", "plain")]
    widget = turn_widget("user", "user", "hi [b]not markup[/b]")
    assert "role-user" in widget.classes and "[b]not markup[/b]" in str(widget.content)

    lines = histogram_lines([Bin(0, 10, 4), Bin(10, 20, 8), Bin(20, 30, 1)], width=60, limit=15)
    assert [line.plain.split("│")[0].strip() for line in lines] == ["0-10", "10-20", "20-30"]
    bars = [line.plain.split("│")[1].split()[0] for line in lines]
    assert len(bars[1]) == 2 * len(bars[0]) and bars[2]  # proportional; a small count still shows
    assert "max length" in lines[1].plain and "max length" not in lines[0].plain
    assert bar_text(0, 10, 20) == "" and bar_text(10, 10, 20) == "█" * 20

    mask = mask_text({"runs": [["<user>hi\n", False], ["hello<end>", True]]})
    assert mask.plain == "<user>hi↵\nhello<end>"
    styles = {mask.plain[span.start : span.end]: str(span.style) for span in mask.spans}
    assert styles["<user>hi↵\n"] == "dim" and "green" in styles["hello<end>"]


def test_new_layouts_render_as_turns_and_unused_fields_show_in_the_report() -> None:
    tools = {"id": 4, "tools": [{"type": "function", "function": {"name": "get_weather"}}], "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
        {"role": "tool", "content": "4 C"}, {"role": "assistant", "content": "4 C in Oslo"}]}
    assert record_turns(tools) == [("tools", "tool", "get_weather"), ("user", "user", "weather?"),
                                   ("assistant", "assistant", '→ calls get_weather({"city": "Oslo"})'),
                                   ("tool", "tool", "4 C"), ("assistant", "assistant", "4 C in Oslo")]
    kto = {"id": 5, "prompt": [{"role": "user", "content": "q"}], "completion": [{"role": "assistant", "content": "a"}],
           "label": False}
    assert record_turns(kto) == [("prompt · user", "user", "q"), ("undesirable · assistant", "rejected", "a")]
    segments = {"id": 6, "segments": [{"text": "Q: ", "label": False}, {"text": "A", "label": True}]}
    assert record_turns(segments) == [("context", "text", "Q: "), ("trained", "chosen", "A")]
    report = {"verdict": "warn", "format": "preference", "kind": "preference", "counts": {"train": 5},
              "structure": {"with_tools": 0}, "fields": {"unused": {"score_chosen": 5, "messages[].weight": 2}}}
    shown = rendered(report_renderable(report))
    lines = [line.rstrip() for line in shown.splitlines()]
    assert "Fields not imported (field: records holding it)" in lines  # the wording `dataset show` prints too
    assert "  score_chosen: 5" in lines and "  messages[].weight: 2" in lines


def test_d_deletes_datasets_and_failed_imports_after_asking(store: Store, home: Path) -> None:
    from tui.screens.dataset_delete import ConfirmDatasetDelete

    folder = home / "datasets" / "1"
    folder.mkdir(parents=True)
    (folder / "train.jsonl").write_text("{}\n")
    _add_dataset(store, "keep", folder)  # id 1, under the home: its snapshot goes with it
    _add_dataset(store, "used", home / "datasets" / "2")
    with store.write() as session:
        session.add(Job(project_id=1, kind="train", name="r", status="queued", config={"dataset_id": 2}, slot="x"))
        session.add(Job(project_id=1, kind="dataset-import", name="broken", status="failed", error="broken: bad"))

    async def select(project: ProjectScreen, pilot: Pilot, key: str) -> None:
        table = project.query_one("#datasets-table", LiveTable)
        table.move_cursor(row=[k for k, _ in table.shown].index(key))
        table.focus()
        await pilot.pause()

    async def scenario(app: TunedeckApp, pilot: Pilot) -> None:
        project = await open_project(app, pilot)
        await wait_for(pilot, lambda: "broken" in dataset_items(project, "failed"), "the failed import")
        await select(project, pilot, "2")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDatasetDelete), "the confirmation")
        assert "is used by run 1, which is queued" in text(app, "#confirm-body")
        await pilot.press("y")
        assert "cancel the job that uses it first" in text(app, "#confirm-note")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, ProjectScreen), "the dialog to close")

        await select(project, pilot, "1")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDatasetDelete), "the confirmation")
        assert "Delete dataset keep and its snapshot?" in text(app, "#confirm-body")
        await pilot.press("y")
        await wait_for(pilot, lambda: "keep" not in dataset_items(project), "the dataset to go")
        assert not folder.exists() and "Deleted dataset keep (id 1)" in notes(app)

        await select(project, pilot, "job-2")
        assert "d deletes it" in text(app, "#datasets-detail")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmDatasetDelete), "the confirmation")
        assert "Delete the failed import of broken and its log?" in text(app, "#confirm-body")
        await pilot.press("y")
        await wait_for(pilot, lambda: "broken" not in dataset_items(project, "failed"), "the failed import to go")
        assert list(dataset_items(project)) == ["used"]

    drive(store, scenario)
