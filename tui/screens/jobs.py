"""`j`: every job of every project in the order they run: what runs now, what waits (its place in its slot's
queue) and what ended, with progress and ETA. Cancel, move a queued job up or down its queue, open it.

Reads the store on the app's refresh timer (one query for all rows); the ETA of each running job comes from
the same smoothed estimator as the run screen and `--wait`, fed each read's step.
"""

from __future__ import annotations

import time
from functools import partial

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual.worker import Worker, WorkerState

from core.jobs import ACTIVE, cancel_job, cancel_message, move_job, reap_stale_jobs
from core.progress import EtaEstimator, eta_text, job_estimator, observe_job, progress_bar
from store.db import Store
from store.errors import first_line
from store.views import JobRow, all_jobs
from tui.widgets.formatting import ago, clip
from tui.widgets.job_keys import back_binding, cancel_binding, error_text
from tui.widgets.live_table import LiveTable
from tui.widgets.names import middle_clip
from tui.widgets.yes_no import ConfirmDialog

COLUMNS = [
    ("id", "ID"),
    ("project", "Project"),
    ("kind", "Kind"),
    ("status", "Status"),
    ("queue", "Queue"),
    ("progress", "Progress"),
    ("eta", "ETA"),
    ("slot", "Slot"),
]
STATUS_STYLE = {"running": "cyan", "completed": "green", "failed": "red", "interrupted": "red",
                "cancelled": "yellow", "queued": "dim"}  # fmt: skip


def kind_label(job: JobRow) -> str:
    """A training run's method (dpo for a DPO run), else the job's kind."""
    if job.kind == "train" and job.method:
        return "dpo" if job.objective == "dpo" else str(job.method)
    return job.kind


def job_cells(job: JobRow, eta_s: float | None, now: float | None = None) -> tuple[str, ...]:
    """One row: id, project, kind, status, queue place (or when it ended), progress, ETA, slot."""
    style = STATUS_STYLE.get(job.status, "dim")
    if job.status == "queued":
        queue = f"#{job.place}" if job.place else "-"
    elif job.status == "running":
        queue = "now"
    else:
        queue = ago(job.finished_at or job.updated_at, now)
    fraction = 1.0 if job.status == "completed" else job.progress
    return (
        str(job.id),
        escape(middle_clip(job.project, 12)),
        escape(middle_clip(kind_label(job), 12)),
        f"[{style}]{job.status}[/{style}]",
        queue,
        f"[{style}]{progress_bar(fraction, 5)}[/{style}]",
        eta_text(eta_s) if job.status == "running" else "-",
        escape(clip(job.slot, 10)),
    )


def load_jobs(store: Store) -> list[JobRow]:
    """Every job, after marking those whose engine stopped beating interrupted (as every reader does)."""
    reap_stale_jobs(store)
    with store.raw() as conn:
        return all_jobs(conn)


class JobsScreen(Screen[None]):
    """All jobs: running, then queued in queue order per slot, then the latest ended ones."""

    HELP_TITLE = "Jobs"
    AUTO_FOCUS = "#jobs-table"
    DEFAULT_CSS = """
    JobsScreen #jobs-summary { height: 1; padding: 0 1; color: $text-muted; }
    JobsScreen #jobs-detail { height: 2; padding: 0 1; color: $text-muted; }
    """
    BINDINGS = [
        back_binding("jobs"),
        Binding("enter", "open_job", "Open", id="jobs.open_job"),
        cancel_binding("jobs", "cancel_job", "Cancel"),
        # + runs a queued job sooner, - later (j/k move the cursor, as in every table; J opens this screen).
        Binding("plus,shift+up", "move(-1)", "Move up", id="jobs.move_up"),
        Binding("minus,shift+down", "move(1)", "Move down", id="jobs.move_down"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.jobs: dict[str, JobRow] = {}
        self.loaded = False
        self.estimators: dict[int, EtaEstimator] = {}
        self._select: str | None = None

    @property
    def store(self) -> Store:
        return self.app.store  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static("[b]tunedeck[/b] · jobs in every project", id="topbar")
        yield Static("Loading…", id="jobs-summary")
        yield LiveTable(COLUMNS, id="jobs-table")
        yield Static("", id="jobs-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.reload()
        self.set_interval(self.app.refresh_seconds, self._tick)  # type: ignore[attr-defined]

    def _tick(self) -> None:
        if self.is_current:
            self.reload()

    def reload(self) -> None:
        self.run_worker(partial(load_jobs, self.store), group="load", thread=True, exclusive=True,
                        exit_on_error=False)  # fmt: skip

    @property
    def current(self) -> JobRow | None:
        key = self.query_one("#jobs-table", LiveTable).current_key
        return self.jobs.get(key) if key is not None else None

    # -- what applies --------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Cancel shows for a queued or running job, moving for a queued one, open for any row."""
        job = self.current if self.is_mounted else None
        if action == "cancel_job":
            return job is not None and job.status in ACTIVE and not job.cancel_requested
        if action == "move":
            return job is not None and job.status == "queued"
        if action == "open_job":
            return job is not None
        return True

    @on(DataTable.RowHighlighted, "#jobs-table")
    def _highlighted(self) -> None:
        self._show_detail()
        self.refresh_bindings()

    @on(DataTable.RowSelected, "#jobs-table")
    def _selected(self) -> None:
        self.action_open_job()

    # -- reading -------------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "load":
            if event.state == WorkerState.SUCCESS:
                self._show(worker.result)
            elif event.state == WorkerState.ERROR:
                self.query_one("#jobs-summary", Static).update(escape(f"Could not read the jobs: {worker.error}"))
        elif worker.group in ("move", "cancel"):
            if event.state == WorkerState.SUCCESS:
                if worker.group == "cancel":
                    self.notify(cancel_message(int(worker.name), worker.result))
                self.reload()
            elif event.state == WorkerState.ERROR:
                self.notify(error_text(worker.error), title="Not done", severity="error")
                self.reload()

    def _show(self, rows: list[JobRow], now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.loaded = True
        self.jobs = {str(job.id): job for job in rows}
        for job in rows:
            if job.status == "running":
                est = self.estimators.setdefault(job.id, job_estimator(job.total_steps))
                observe_job(est, job.step, job.total_steps, job.progress, job.heartbeat_at)
        self.estimators = {i: e for i, e in self.estimators.items() if str(i) in self.jobs}
        table = self.query_one("#jobs-table", LiveTable)
        shown = [(str(job.id), job_cells(job, self._eta(job, now), now)) for job in rows]
        select, self._select = self._select, None
        table.sync(shown, select=select)
        table.display = True
        running = sum(job.status == "running" for job in rows)
        queued = sum(job.status == "queued" for job in rows)
        slots = len({job.slot for job in rows if job.status in ACTIVE})
        self.query_one("#jobs-summary", Static).update(
            f"{running} running · {queued} queued on {slots} slot(s) · {len(rows) - running - queued} ended shown"
            if rows else "No jobs yet: imports, runs, merges and conversions show here.")  # fmt: skip
        self._show_detail()
        self.refresh_bindings()

    def _eta(self, job: JobRow, now: float) -> float | None:
        est = self.estimators.get(job.id)
        return est.eta(now) if est is not None else None

    def _show_detail(self) -> None:
        job = self.current
        detail = self.query_one("#jobs-detail", Static)
        if job is None:
            detail.update("")
            return
        what = f"{job.kind} job {job.id}" + (f" {job.name}" if job.name else "") + f" · project {job.project}"
        if job.status == "queued":
            second = f"#{job.place} in the {job.slot} queue · K/J move it up/down · c takes it off the queue"
        elif job.status == "running":
            steps = f"step {job.step}/{job.total_steps} · " if job.total_steps else ""
            second = f"{steps}started {ago(job.started_at)} · c asks it to stop · enter opens it"
        elif job.error and job.status != "completed":
            second = first_line(job.error)
        else:
            second = f"{job.status} {ago(job.finished_at or job.updated_at)} · enter opens it"
        detail.update(f"{escape(clip(what, 78))}\n{escape(clip(second, 78))}")

    # -- actions -------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss()

    def action_open_job(self) -> None:
        job = self.current
        if job is None:
            return
        from tui.screens.job import open_job

        open_job(self.app, job.id, job.kind)

    def action_move(self, offset: int) -> None:
        job = self.current
        if job is None or job.status != "queued":
            return
        self._select = str(job.id)
        self.run_worker(partial(move_job, self.store, job.id, offset), group="move", thread=True,
                        exit_on_error=False)  # fmt: skip

    def action_cancel_job(self) -> None:
        job = self.current
        if job is None or job.status not in ACTIVE:
            return
        body = (f"Stop {job.kind} job [b]{job.id}[/b] (project {escape(job.project)})?" if job.status == "running"
                else f"Take {job.kind} job [b]{job.id}[/b] off the {escape(job.slot)} queue?")  # fmt: skip
        self.app.push_screen(ConfirmDialog("Cancel job", body, "y cancel the job"),
                             partial(self._confirmed_cancel, job.id))  # fmt: skip

    def _confirmed_cancel(self, job_id: int, yes: bool | None) -> None:
        if yes:
            self.run_worker(partial(cancel_job, self.store, job_id), name=str(job_id), group="cancel", thread=True,
                            exit_on_error=False)  # fmt: skip
