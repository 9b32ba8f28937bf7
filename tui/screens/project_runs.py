"""The project screen's Runs tab: the detail line under the table, opening a run, marking runs to compare and
queueing a new one. A part of ProjectScreen (tui/screens/project.py), which mixes it in."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from textual import on
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import DataTable, Static

from store.errors import first_line
from store.views import RunRow
from tui.widgets.formatting import clip
from tui.widgets.live_table import LiveTable
from tui.widgets.project_rows import FAILED

if TYPE_CHECKING:
    from store.db import Store
    from tui.screens.project import ProjectData


class RunsTab(Screen[None]):
    """The Runs tab's behaviour (ProjectScreen's base; declares no keys of its own)."""

    # What ProjectScreen has (declared here for the type checker only).
    data: ProjectData | None
    project_name: str
    store: Store
    active_tab: str
    _select: dict[str, str]
    reload: Callable[[], None]
    action_show_tab: Callable[[str], None]
    marked: list[str]

    _show: Callable[[], None]

    @property
    def current_run(self) -> RunRow | None:
        """The Runs tab's row under the cursor."""
        if self.data is None:
            return None
        table = self.query_one("#runs-table", LiveTable)
        key = table.current_key if table.display else None
        return self.data.runs.get(key) if key is not None else None

    def _show_run_detail(self) -> None:
        detail = self.query_one("#runs-detail", Static)
        run = self.current_run
        if run is None:
            detail.update("")
            detail.display = False
            return
        detail.display = True
        if self.marked:
            ids = ", ".join(self.marked)
            more = "C compares them" if len(self.marked) > 1 else "mark another with space to compare"
            text = (f"[b yellow]●[/] {len(self.marked)} marked (runs {escape(clip(ids, 30))}) · {more}"
                    "\n[dim]space on a marked run unmarks it · enter opens the highlighted run[/dim]")
        elif run.status in FAILED and run.error:
            first = first_line(run.error)
            text = f"[red]{escape(clip(first, 70))}[/red]\n[dim]enter opens run {run.id} · n starts a new run[/dim]"
        elif run.kind == "train":
            model = (run.model or "?").rstrip("/").rsplit("/", 1)[-1]
            what = f"{run.objective or '?'}/{run.method or '?'} · model {model} · dataset {run.dataset or '?'}"
            text = (f"{escape(clip(what, 76))}\n[dim]enter opens run {run.id}: charts, log, config"
                    " · space marks to compare[/dim]")
        else:
            text = f"[dim]enter opens job {run.id} ({escape(run.kind)}): its log and config[/dim]"
        detail.update(text)

    @on(DataTable.RowHighlighted, "#runs-table")
    def _run_highlighted(self) -> None:
        self._show_run_detail()

    @on(DataTable.RowSelected, "#runs-table")
    def _run_selected(self) -> None:
        self.action_open_run()

    def action_open_run(self) -> None:
        run = self.current_run
        if run is None:
            self.notify("No run to open. Press n to start one.", severity="warning")
            return
        from tui.screens.run import RunScreen

        self.app.push_screen(RunScreen(run.id))

    def action_mark_run(self) -> None:
        """space on the Runs tab: mark the highlighted run for comparing, or unmark it."""
        if self.active_tab != "runs":
            return
        run = self.current_run
        if run is None:
            return
        key = str(run.id)
        if key in self.marked:
            self.marked.remove(key)
        else:
            self.marked.append(key)
        self._show()

    def action_compare_runs(self) -> None:
        """C: compare the marked runs (two or more)."""
        if len(self.marked) < 2:
            self.notify("Mark two or more runs with space on the Runs tab, then press C to compare them.",
                        severity="warning")  # fmt: skip
            return
        from tui.screens.compare import CompareScreen

        self.app.push_screen(CompareScreen([int(key) for key in self.marked]))

    def action_new_run(self) -> None:
        from tui.screens.new_run import NewRunForm

        self.app.push_screen(NewRunForm(self.store, self.project_name), self._run_queued)

    def _run_queued(self, job_id: int | None) -> None:
        if job_id is None:
            return
        self.notify(f"Run {job_id} queued.")
        self._select["runs"] = str(job_id)
        self.action_show_tab("runs")
        self.reload()
