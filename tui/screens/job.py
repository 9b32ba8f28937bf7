"""One job that is not a training run (import, merge, convert, quantize, eval, push, download): its progress
(stage, work done, ETA), its log and its configuration and result. Training runs have the run screen.

A worker polls the store about once a second (the job row and the log from the last byte read). The stage
is the engine's last message in the log (`[12:00:01] converting ...`); the work done is the job's step
count in the unit of its kind (tensors merged, records read, bytes fetched) or its reported fraction.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from core.jobs import ACTIVE, cancel_job, cancel_message, cancel_refusal
from core.progress import eta_text, job_estimator, observe_job, progress_bar
from store.db import Store
from store.errors import NotFound, first_line
from store.home import job_log
from store.views import RunDetail, run_detail
from tui.widgets.badges import status_text
from tui.widgets.formatting import ago, clip, size_text
from tui.widgets.job_keys import error_text, job_bindings
from tui.widgets.log_pane import LogPane, log_bindings
from tui.widgets.log_search import SearchBox
from tui.widgets.log_tail import LogChunk, LogTail, read_log
from tui.widgets.names import middle_clip
from tui.widgets.yes_no import ConfirmDialog

POLL_SECONDS = 1.0
UNITS = {"merge-models": "tensors", "dataset-import": "records", "model-add": "bytes", "download": "bytes"}
_STAMPED = re.compile(r"^\[\d\d:\d\d:\d\d\] (.+)$")  # a line the engine wrote through JobContext.log


def open_job(app: App, job_id: int, kind: str) -> None:
    """Push the screen that shows job `job_id`: the run screen for a training run, else the job screen."""
    if kind == "train":
        from tui.screens.run import RunScreen

        app.push_screen(RunScreen(job_id))
    else:
        app.push_screen(JobScreen(job_id))


def work_text(kind: str, step: int, total: int | None) -> str:
    """The work done in the unit of the job's kind: `12/30 tensors`, `4.0 MB/1.2 GB`, `1,200 records`."""
    unit = UNITS.get(kind, "steps")
    if unit == "bytes":
        return f"{size_text(step)}/{size_text(total)}" if total else size_text(step)
    done = f"{step:,}/{total:,}" if total else f"{step:,}"
    return f"{done} {unit}"


def stage_of(lines: list[str], previous: str = "") -> str:
    """The engine's last stamped message among `lines` (else `previous`)."""
    for line in reversed(lines):
        match = _STAMPED.match(line)
        if match:
            return match.group(1).strip()
    return previous


@dataclass
class JobPoll:
    """One read of a job: its row and the new lines of its log."""

    detail: RunDetail
    log: LogChunk
    log_path: str


def poll_job(store: Store, job_id: int, log_path: str, log_offset: int) -> JobPoll:
    """The job row and its log from `log_offset` (from the start when the log file changed)."""
    with store.raw() as conn:
        detail = run_detail(conn, job_id)
    path = detail.log_path or str(job_log(store.home, job_id))
    if path != log_path:
        log_offset = 0
    return JobPoll(detail, read_log(path, log_offset, final=detail.status not in ACTIVE), path)


def details_text(detail: RunDetail) -> str:
    """The Details tab: the job's configuration and what it produced, as indented JSON."""
    parts = [f"# {detail.kind} job {detail.id} · project {detail.project} · slot {detail.slot}"]
    parts.append("# configuration\n" + (json.dumps(detail.config, indent=2, sort_keys=True) if detail.config
                                        else "(none)"))  # fmt: skip
    if detail.result:
        parts.append("# result\n" + json.dumps(detail.result, indent=2, sort_keys=True))
    if detail.error:
        parts.append("# error\n" + detail.error)
    return "\n\n".join(parts) + "\n"


class JobScreen(LogPane, Screen[None]):
    """A header with the job's status, progress, stage and ETA over a Log tab and a Details tab."""

    HELP_TITLE = "Job"
    AUTO_FOCUS = ""
    log_status_id = "job-log-status"
    LOG_EMPTY = "No log yet: it starts when a runner picks the job up."
    DEFAULT_CSS = """
    JobScreen #job-header { height: 3; padding: 0 1; }
    JobScreen #job-tabs { height: 1fr; }
    JobScreen #job-log-status { height: 1; padding: 0 1; }
    JobScreen #log-body { height: 1fr; }
    """
    BINDINGS = [
        *job_bindings("job", "cancel_job", "Cancel job"),
        Binding("o", "open_result", "Open artifact", id="job.open_result"),
        *log_bindings("job"),
        Binding("1", "show_tab('log')", "Log tab", show=False, id="job.show_tab_log"),
        Binding("2", "show_tab('details')", "Details tab", show=False, id="job.show_tab_details"),
    ]

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.detail: RunDetail | None = None
        self.stage = ""
        self.eta = job_estimator(None)
        self._polling = False
        self._gone = False
        self._details_shown = ""

    @property
    def store(self) -> Store:
        return self.app.store  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static(f"[b]tunedeck[/b] · job {self.job_id}", id="topbar")
        yield Static("Loading…", id="job-header")
        with TabbedContent(id="job-tabs", initial="log"):
            with TabPane("1 Log", id="log"):
                yield Static("", id="job-log-status")
                yield SearchBox()
                yield LogTail(id="log-body")
            with TabPane("2 Details", id="details"):
                with VerticalScroll(id="details-body", classes="tab-body"):
                    yield Static("Loading…", id="details-text")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#log-body").focus()
        self.show_log_status()
        self.poll()
        self.set_interval(POLL_SECONDS, self.poll)

    # -- what applies --------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Only the actions that apply to the job as it is now show in the footer and answer their key."""
        d = self.detail
        if action == "cancel_job":
            return d is not None and d.status in ACTIVE and not d.cancel_requested
        if action == "open_result":
            return d is not None and d.result.get("artifact_id") is not None
        if action == "follow_log":
            return self.log_follow_allowed()
        return True

    # -- polling -------------------------------------------------------------------

    def poll(self) -> None:
        if self._polling or self._gone:
            return
        self._polling = True
        work = partial(self._poll, self._log_generation, self.store, self.job_id, self._log_path, self._log_offset)
        self.run_worker(work, group="poll", thread=True, exit_on_error=False)

    @staticmethod
    def _poll(generation: int, *args: Any) -> tuple[int, JobPoll]:
        return generation, poll_job(*args)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if self.search_worker_changed(event):
            return
        worker = event.worker
        if worker.group == "poll":
            if event.state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
                return
            self._polling = False
            if event.state == WorkerState.SUCCESS:
                generation, poll = worker.result
                self._apply(poll, with_log=generation == self._log_generation)
            elif isinstance(worker.error, NotFound):
                self._gone = True
                self.query_one("#job-header", Static).update(f"[red]Job {self.job_id} no longer exists.[/red]")
            elif event.state == WorkerState.ERROR:
                self.query_one("#job-header", Static).update(escape(f"Could not read job {self.job_id}: "
                                                                    f"{worker.error}"))  # fmt: skip
        elif worker.group == "cancel":
            if event.state == WorkerState.SUCCESS:
                self.notify(cancel_message(self.job_id, worker.result))
                self.poll()
            elif event.state == WorkerState.ERROR:
                self.notify(error_text(worker.error), title="Not done", severity="error")

    def _apply(self, poll: JobPoll, with_log: bool = True) -> None:
        """Show a poll; its log lines only if `with_log` (a poll started before the view went back to the tail has
        lines from the old place)."""
        previous = self.detail
        self.detail = d = poll.detail
        if d.status == "running":
            observe_job(self.eta, d.step, d.total_steps, d.progress, d.heartbeat_at)
        if with_log and self.show_log(poll.log_path, poll.log):
            self.stage = stage_of(poll.log.lines, self.stage)
        self._show_header()
        text = details_text(d)
        if text != self._details_shown:
            self._details_shown = text
            self.query_one("#details-text", Static).update(escape(text))
        if previous is None or (previous.status, previous.cancel_requested, bool(previous.result)) != (
            d.status, d.cancel_requested, bool(d.result)
        ):  # fmt: skip
            self.refresh_bindings()
        if previous is not None and previous.status != d.status and d.status not in ACTIVE:
            severity = "information" if d.status == "completed" else "warning"
            self.notify(f"Job {d.id} ({d.kind}) {d.status}.", severity=severity)  # type: ignore[arg-type]

    # -- showing -------------------------------------------------------------------

    def header_lines(self, now: float | None = None) -> list[str]:
        """The header's three lines (markup): status, progress and ETA; the stage or error; what and when."""
        d = self.detail
        if d is None:
            return ["Loading…"]
        fraction = d.progress if d.status != "completed" else 1.0
        line = f"{status_text(d.status)}  {progress_bar(fraction, 12)}"
        if d.step or d.total_steps:
            line += f"  {escape(work_text(d.kind, d.step, d.total_steps))}"
        if d.status == "running":
            line += f"  ETA {eta_text(self.eta.eta(time.time() if now is None else now))}"
        line += f"  · {escape(d.slot)}"
        if d.status == "running" and d.cancel_requested:
            second = "[yellow]cancel requested: it stops at its next check[/yellow]"
        elif d.status == "queued":
            second = f"[dim]waiting for the {escape(d.slot)} runner[/dim]"
        elif d.status in ("failed", "interrupted", "cancelled") and d.error:
            second = f"[red]{escape(clip(first_line(d.error), 76))}[/red]"
        elif self.stage:
            second = f"[dim]stage:[/dim] {escape(clip(self.stage, 69))}"
        else:
            second = "[dim]no stage reported yet[/dim]"
        parts = []
        if d.result.get("artifact_id") is not None:
            parts.append(f"artifact {d.result['artifact_id']} (o opens it)")
        if d.finished_at:
            parts.append(f"ended {ago(d.finished_at, now)}")
        elif d.started_at:
            parts.append(f"started {ago(d.started_at, now)}")
        else:
            parts.append(f"queued {ago(d.created_at, now)}")
        return [line, second, "[dim]" + escape(" · ".join(parts)) + "[/dim]"]

    def _show_header(self) -> None:
        d = self.detail
        if d is None:
            return
        name = f" [b]{escape(middle_clip(d.name, 24))}[/b]" if d.name else ""
        project = escape(middle_clip(d.project, 20))
        self.query_one("#topbar", Static).update(
            f"[b]tunedeck[/b] · project [b]{project}[/b] · {escape(d.kind)} job {d.id}{name}")
        self.query_one("#job-header", Static).update("\n".join(self.header_lines()))

    # -- actions -------------------------------------------------------------------

    @property
    def active_tab(self) -> str:
        return self.query_one("#job-tabs", TabbedContent).active

    def action_show_tab(self, tab_id: str) -> None:
        self.query_one("#job-tabs", TabbedContent).active = tab_id
        if not self.query_one(SearchBox).display:
            self.call_after_refresh(self.query_one(f"#{tab_id}-body").focus)

    def action_back(self) -> None:
        self.dismiss()

    def action_cancel_job(self) -> None:
        d = self.detail
        if d is None:
            return
        refusal = cancel_refusal(d.id, d.status)
        if refusal:
            self.notify(refusal, severity="warning")
            return
        body = (f"Stop {d.kind} job [b]{d.id}[/b]? It ends as cancelled at its next check."
                if d.status == "running" else f"Job [b]{d.id}[/b] has not started; cancelling takes it off the queue.")
        self.app.push_screen(ConfirmDialog("Cancel job", body, "y cancel the job"), self._confirmed_cancel)

    def _confirmed_cancel(self, yes: bool | None) -> None:
        if yes:
            self.run_worker(partial(cancel_job, self.store, self.job_id), group="cancel", thread=True,
                            exit_on_error=False)  # fmt: skip

    def action_open_result(self) -> None:
        d = self.detail
        if d is None or d.result.get("artifact_id") is None:
            return
        from tui.screens.artifact import ArtifactScreen

        self.app.push_screen(ArtifactScreen(int(d.result["artifact_id"])))
