"""One dataset: its lint report, its token lengths as a chart, and a paged preview of its records.

Everything comes from the dataset's snapshot folder, read in worker threads (tui.widgets.dataset_files);
the report's wording is engine.datasets.lint_report's, shared with `tunedeck dataset show`, and a record
is drawn by tui.widgets.record_view.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from store.db import Store
from store.errors import NotFound
from store.views import json_dict
from tui.widgets.badges import verdict_badge
from tui.widgets.dataset_files import DatasetData, SplitIndex, index_split, load_dataset, read_record
from tui.widgets.formatting import ago
from tui.widgets.histogram import Bin, HistogramBars
from tui.widgets.record_view import PreviewBody, record_turns, turn_widget

TABS = [("report", "Report"), ("tokens", "Tokens"), ("preview", "Preview")]
SPLITS = ("train", "val")
FILTERS: list[tuple[str, str]] = [
    ("all", "all"),
    ("duplicates", "duplicates"),
    ("pii", "PII"),
    ("too_long", "too long"),
    ("masked_out", "masked-out"),
]
FILTER_LABELS = dict(FILTERS)


def histogram_bins(tokens: dict[str, Any]) -> list[Bin]:
    """The report's token-length histogram as bars."""
    bins = []
    for h in tokens.get("histogram") or ():
        try:
            bins.append(Bin(int(h["lo"]), int(h["hi"]), int(h["count"])))
        except (KeyError, TypeError, ValueError):
            continue
    return bins


class DatasetScreen(Screen[None]):
    """A dataset's report, token-length chart and record preview; esc goes back."""

    HELP_TITLE = "Dataset"
    AUTO_FOCUS = ""
    BINDINGS = [
        Binding("escape,backspace", "back", "Back", id="dataset.back"),
        Binding("1", "show_tab('report')", "Report tab", show=False, id="dataset.show_tab_report"),
        Binding("2", "show_tab('tokens')", "Tokens tab", show=False, id="dataset.show_tab_tokens"),
        Binding("3", "show_tab('preview')", "Preview tab", show=False, id="dataset.show_tab_preview"),
        Binding("right_square_bracket,pagedown", "next_record", "Next record", id="dataset.next_record"),
        # "\\[" shows as "[" in the help and the palette, whose key column is markup (a bare "[" breaks it).
        Binding("left_square_bracket", "prev_record", "Previous record", show=False, id="dataset.prev_record"),
        Binding("pageup", "prev_record", "Previous record", show=False, id="dataset.prev_record_pageup"),
        Binding("g", "first_record", "First record", show=False, id="dataset.first_record"),
        Binding("G", "last_record", "Last record", show=False, id="dataset.last_record"),
        Binding("f", "next_filter", "Filter", id="dataset.next_filter"),
        Binding("F", "prev_filter", "Previous filter", show=False, id="dataset.prev_filter"),
        Binding("t", "toggle_split", "Train/val", id="dataset.toggle_split"),
    ]

    def __init__(self, dataset_id: int) -> None:
        super().__init__()
        self.dataset_id = dataset_id
        self.data: DatasetData | None = None
        self.split = "train"
        self.filter = "all"
        self.position = 0  # in the filtered list of the current split
        self.record: dict[str, Any] | None = None  # the record on screen
        self._indexes: dict[str, SplitIndex] = {}
        self._indexing: set[str] = set()
        self._positions: dict[tuple[str, str], Sequence[int]] = {}  # (split, filter) -> positions, once read
        self._page = 0  # counts page requests, so that a slow read never shows an older page

    @property
    def store(self) -> Store:
        return self.app.store  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static(f"[b]tunedeck[/b] · dataset {self.dataset_id}", id="topbar")
        yield Static("Loading…", id="dataset-summary")
        with TabbedContent(id="dataset-tabs", initial="report"):
            with TabPane("1 Report", id="report"):
                with VerticalScroll(id="report-body", classes="tab-body"):
                    yield Static("Loading…", id="report-text")
            with TabPane("2 Tokens", id="tokens"):
                with VerticalScroll(id="tokens-body", classes="tab-body"):
                    yield Static("Loading…", id="tokens-text")
                    yield HistogramBars(id="histogram")
                    yield Static("", id="tokens-notes")
            with TabPane("3 Preview", id="preview"):
                yield Static("", id="preview-bar")
                with PreviewBody(id="preview-body", classes="tab-body"):
                    yield Static("Loading…", classes="preview-note")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#histogram").display = False
        self.query_one("#report-body").focus()
        self.run_worker(partial(load_dataset, self.store, self.dataset_id), group="load", thread=True,
                        exit_on_error=False)  # fmt: skip

    # -- tabs --------------------------------------------------------------------

    @property
    def active_tab(self) -> str:
        return self.query_one("#dataset-tabs", TabbedContent).active

    def action_show_tab(self, tab_id: str) -> None:
        self.query_one("#dataset-tabs", TabbedContent).active = tab_id

    @on(TabbedContent.TabActivated, "#dataset-tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id or ""
        if tab == "preview":
            self._ensure_index()
            self._show_preview()
        # Focus goes to the tab's scrollable body, unless the tab bar has it (←/→ keep switching).
        if not (self.focused is not None and self.focused is self.query_one("#dataset-tabs").query_one("Tabs")):
            self.query_one(f"#{tab}-body").focus()

    def action_back(self) -> None:
        self.dismiss()

    # -- loading -----------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.SUCCESS:
            if worker.group == "load":
                self.data = worker.result
                self._show_data()
            elif worker.group == "index":
                index: SplitIndex = worker.result
                self._indexing.discard(index.split)
                self._indexes[index.split] = index
                self._show_preview()
            elif worker.group == "record":
                page, record = worker.result
                if page == self._page:
                    self.record = record
                    self.run_worker(self._render_record(record), group="render", exclusive=True)
        elif event.state == WorkerState.ERROR:
            error = worker.error
            if worker.group == "load" and isinstance(error, NotFound):
                self.notify(f"Dataset {self.dataset_id} no longer exists.", severity="warning")
                self.dismiss()
            elif worker.group == "load":
                self.query_one("#dataset-summary", Static).update(escape(f"Could not read the dataset: {error}"))
            elif worker.group == "index":
                self._indexing.clear()
                self._preview_note(f"Could not read the records: {error}")
            else:
                self._preview_note(f"Could not read the record: {error}")

    def _show_data(self) -> None:
        data = self.data
        if data is None:
            return
        d = data.detail
        self.query_one("#topbar", Static).update(
            f"[b]tunedeck[/b] · project [b]{escape(d.project)}[/b] · dataset [b]{escape(d.name)}[/b]"
        )
        verdict = (data.report or {}).get("verdict") or _lint_verdict(d.lint)
        self.query_one("#dataset-summary", Static).update(
            f"{verdict_badge(verdict)} · {escape(d.format or '?')} · {d.num_train:,} train / {d.num_val:,} val · "
            f"id {d.id} · added {ago(d.created_at)}"
        )
        report_text = self.query_one("#report-text", Static)
        tokens_text = self.query_one("#tokens-text", Static)
        histogram = self.query_one("#histogram", HistogramBars)
        if data.report is None:
            report_text.update(escape(data.problem))
            tokens_text.update(escape(data.problem))
        else:
            from engine.datasets.lint_report import report_renderable, tokens_notes, tokens_summary

            report_text.update(report_renderable(data.report, tokens=False))  # the Tokens tab shows them
            tokens = data.report.get("tokens") or {}
            if "skipped" in tokens or not tokens:
                tokens_text.update(
                    f"Token lengths were not measured ({escape(str(tokens.get('skipped', 'not in the report')))}).\n"
                    "Import with a tokenizer (the import dialog's Tokenizer field, or --tokenizer) to see them."
                )
            else:
                total = int((data.report.get("counts") or {}).get("total") or 0)
                summary = tokens_summary(tokens, total)
                if tokens.get("over_max"):
                    summary.append(" · the Preview tab's too-long filter shows them", style="dim")
                tokens_text.update(summary)
                histogram.set_data(histogram_bins(tokens), tokens.get("max_length"))
                histogram.display = True
                self.query_one("#tokens-notes", Static).update(tokens_notes(tokens))
        if self.active_tab == "preview":
            self._ensure_index()
        self._show_preview()

    def _ensure_index(self) -> None:
        if self.data is None or not self.data.detail.path:
            return
        split = self.split
        if split in self._indexes or split in self._indexing:
            return
        self._indexing.add(split)
        self.run_worker(partial(index_split, self.data.folder, split), group="index", thread=True,
                        exit_on_error=False)  # fmt: skip

    # -- preview -----------------------------------------------------------------

    @property
    def index(self) -> SplitIndex | None:
        return self._indexes.get(self.split)

    def positions(self, split: str | None = None, kind: str | None = None) -> Sequence[int]:
        """Positions in the split's file of the records the filter lets through."""
        split, kind = split or self.split, kind or self.filter
        index = self._indexes.get(split)
        if index is None:
            return []
        if kind == "all" or self.data is None:
            return range(len(index))
        cached = self._positions.get((split, kind))
        if cached is None:
            flagged = self.data.flags.get(kind, set())
            cached = [i for i, record_id in enumerate(index.ids) if record_id in flagged] if flagged else []
            self._positions[split, kind] = cached
        return cached

    @property
    def current_ids(self) -> list[int]:
        """The ids of the records the current split and filter show, in order."""
        index = self.index
        return [index.ids[i] for i in self.positions()] if index is not None else []

    def _bar_text(self, shown: Sequence[int]) -> str:
        data = self.data
        index = self.index
        splits = []
        for split in SPLITS:
            count = len(self._indexes[split]) if split in self._indexes else None
            if count is None and data is not None:
                count = data.detail.num_train if split == "train" else data.detail.num_val
            label = f"{split} {count:,}" if count is not None else split
            splits.append(f"[reverse b]▸{label} [/]" if split == self.split else f" {label} ")
        if index is None:
            where = "reading…"
        elif not shown:
            where = "no records"
        else:
            where = f"record [b]{self.position + 1:,}[/b] of {len(shown):,} · id {index.ids[shown[self.position]]}"
        filters = []
        for kind, label in FILTERS:
            if kind == "all" or index is None:
                text = label
            else:
                text = f"{label} {len(self.positions(kind=kind)):,}"
            filters.append(f"[reverse b]▸{text} [/]" if kind == self.filter else f" {text} ")
        partial_note = ""
        if data is not None and data.flags_partial and self.filter != "all":
            partial_note = " [dim](first ids from the report only)[/dim]"
        return f"{' '.join(splits)}│ {where}{partial_note}\n{' '.join(filters)}"

    def _show_preview(self) -> None:
        """The bar and, when the page changed, the record (read in a worker)."""
        shown = self.positions()
        if shown:
            self.position = min(max(self.position, 0), len(shown) - 1)
        else:
            self.position = 0
        self.query_one("#preview-bar", Static).update(self._bar_text(shown))
        index = self.index
        if self.data is None:
            return
        if index is None:
            if self.data.problem and not self.data.detail.path:
                self._preview_note(self.data.problem)
            else:
                self._preview_note(f"Reading {self.split}.jsonl…")
            return
        if index.missing:
            self._preview_note(f"There is no {self.split}.jsonl in {index.path.parent}.")
            return
        if not shown:
            if not len(index):
                self._preview_note(f"The {self.split} split is empty.")
            else:
                label = FILTER_LABELS[self.filter]
                note = f"No {label} records in the {self.split} split."
                if self.data.flags_partial:
                    note += " (Without flags.json the filters know only the first ids the report lists.)"
                self._preview_note(note + " Press f for the next filter, t for the other split.")
            return
        self._page += 1
        offset = index.offsets[shown[self.position]]
        self.run_worker(partial(self._read, self._page, index.path, offset), group="record", thread=True,
                        exclusive=True, exit_on_error=False)  # fmt: skip

    @staticmethod
    def _read(page: int, path: Path, offset: int) -> tuple[int, dict[str, Any]]:
        return page, read_record(path, offset)

    def _preview_note(self, message: str) -> None:
        self.record = None
        self._page += 1
        self.run_worker(self._render_note(message), group="render", exclusive=True)

    async def _render_note(self, message: str) -> None:
        body = self.query_one("#preview-body", PreviewBody)
        await body.remove_children()
        await body.mount(Static(escape(message), classes="preview-note"))

    async def _render_record(self, record: dict[str, Any]) -> None:
        body = self.query_one("#preview-body", PreviewBody)
        await body.remove_children()
        turns = record_turns(record)
        widgets = [turn_widget(*turn) for turn in turns] or [Static("(no turns)", classes="preview-note")]
        await body.mount_all(widgets)
        body.scroll_home(animate=False)

    def _move(self, position: int) -> None:
        if self.active_tab != "preview":
            self.action_show_tab("preview")
            return
        shown = self.positions()
        if not shown:
            return
        position = min(max(position, 0), len(shown) - 1)
        if position != self.position:
            self.position = position
            self._show_preview()

    def action_next_record(self) -> None:
        self._move(self.position + 1)

    def action_prev_record(self) -> None:
        self._move(self.position - 1)

    def action_first_record(self) -> None:
        self._move(0)

    def action_last_record(self) -> None:
        self._move(len(self.positions()) - 1)

    def _set_filter(self, step: int) -> None:
        kinds = [kind for kind, _ in FILTERS]
        self.filter = kinds[(kinds.index(self.filter) + step) % len(kinds)]
        self.position = 0
        if self.active_tab != "preview":
            self.action_show_tab("preview")  # its activation shows the page
        else:
            self._show_preview()

    def action_next_filter(self) -> None:
        self._set_filter(1)

    def action_prev_filter(self) -> None:
        self._set_filter(-1)

    def action_toggle_split(self) -> None:
        self.split = "val" if self.split == "train" else "train"
        self.position = 0
        if self.active_tab != "preview":
            self.action_show_tab("preview")
        else:
            self._ensure_index()
            self._show_preview()


def _lint_verdict(lint: Any) -> str:
    return str(json_dict(lint).get("verdict") or "")
