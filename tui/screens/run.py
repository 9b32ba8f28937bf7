"""One run: its status, live charts, metrics, log and config, and cancel / resume / retry / duplicate-and-edit.

A worker polls the store about once a second: the job row, the metric points since the last step it
has (charts and the metrics table grow incrementally) and the log file from the last byte offset
read. Nothing here waits on the engine; reopening the screen (or the TUI) during a run picks it up live.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from core.jobs import ACTIVE, cancel_job, cancel_refusal, reap_stale_jobs
from core.progress import eta_text, fmt_value, job_estimator, observe_job, progress_bar
from core.runs import REQUEUABLE, delete_run, requeue_refusal, resume_run, retry_run
from store.db import Store
from store.errors import NotFound, first_line
from store.home import job_log
from store.metrics import last_step, points_since
from store.views import RunDetail, run_detail
from tui.widgets.badges import status_text
from tui.widgets.formatting import ago, clip
from tui.widgets.job_keys import error_text, job_bindings
from tui.widgets.live_table import LiveTable
from tui.widgets.log_pane import LogPane, log_bindings
from tui.widgets.log_search import SearchBox
from tui.widgets.log_tail import LogChunk, LogTail, read_log
from tui.widgets.metric_chart import MetricChart
from tui.widgets.run_config import config_text
from tui.widgets.yes_no import ConfirmDialog

POLL_SECONDS = 1.0
REAP_EVERY_S = 5.0
# Each chart: its id, title, series (metric, label) and whether lower is better. Train and eval loss share the
# big chart; learning rate and grad norm sit side by side under it.
CHARTS = [
    ("loss", "loss", [("loss", "train"), ("eval_loss", "eval")], True),
    ("learning_rate", "learning rate", [("learning_rate", "lr")], False),
    ("grad_norm", "grad norm", [("grad_norm", "grad norm")], True),
]
CHARTED = {metric: chart for chart, _, series, _ in CHARTS for metric, _ in series}  # metric -> its chart
TABS = [("charts", "Charts"), ("metrics", "Metrics"), ("log", "Log"), ("config", "Config")]
# ----------------------------------------------------------------------------- store access (worker threads)


def delete_run_text(store: Store, job_id: int) -> str:
    """Delete an ended run with its files and the artifacts it made (as `tunedeck run delete --force`); what to
    tell the user."""
    report = delete_run(store, job_id, force=True)
    made = f" and {len(report.artifacts)} artifact(s)" if report.artifacts else ""
    return f"Run {job_id}{made} deleted; {report.freed_bytes / 1e6:,.1f} MB freed."


@dataclass
class RunPoll:
    """One read of a run: its row, new metric points and new log lines."""

    detail: RunDetail
    points: list[tuple[int, str, float]] = field(default_factory=list)  # (step, name, value) from `since`
    restart: bool = False  # the metrics went back (a retry): drop what is shown
    log: LogChunk | None = None
    log_path: str = ""


def poll_run(store: Store, job_id: int, since: int, log_path: str, log_offset: int) -> RunPoll:
    """The job row, metric points at or after step `since` (a point can arrive late at the last step
    seen) and the log from `log_offset`. Reads the whole history when `since` is -1."""
    with store.raw() as conn:
        detail = run_detail(conn, job_id)
        last = last_step(conn, job_id)
        restart = since >= 0 and (last is None or last < since)
        points = points_since(conn, job_id, -1 if restart else since)
    poll = RunPoll(detail, points, restart)
    path = detail.log_path or str(job_log(store.home, job_id))
    if path != log_path:
        log_offset = 0
    poll.log_path = path
    poll.log = read_log(path, log_offset, final=detail.status not in ACTIVE)
    return poll


# ----------------------------------------------------------------------------- the screen


class RunScreen(LogPane, Screen[None]):
    """A run's header (status, step, ETA, device) over its Charts, Metrics, Log and Config tabs."""

    HELP_TITLE = "Run"
    AUTO_FOCUS = ""
    LOG_EMPTY = "No log yet: it starts when the runner picks the run up."
    BINDINGS = [
        *job_bindings("run", "cancel_run", "Cancel run"),
        Binding("r", "resume_run", "Resume", id="run.resume_run"),
        Binding("R", "retry_run", "Retry", id="run.retry_run"),
        Binding("e", "edit_copy", "Duplicate & edit", id="run.edit_copy"),
        Binding("x", "delete_run", "Delete run", show=False, id="run.delete_run"),
        Binding("s", "toggle_smoothing", "Smooth", id="run.toggle_smoothing"),
        Binding("l", "toggle_log", "Log scale", show=False, id="run.toggle_log"),
        *log_bindings("run"),
        Binding("1", "show_tab('charts')", "Charts tab", show=False, id="run.show_tab_charts"),
        Binding("2", "show_tab('metrics')", "Metrics tab", show=False, id="run.show_tab_metrics"),
        Binding("3", "show_tab('log')", "Log tab", show=False, id="run.show_tab_log"),
        Binding("4", "show_tab('config')", "Config tab", show=False, id="run.show_tab_config"),
    ]

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id
        self.detail: RunDetail | None = None
        self.latest: dict[str, tuple[int, float]] = {}  # metric -> (step, value)
        self.config_shown = ""
        self._since = -1  # the highest metric step read so far
        self._polling = False
        self._generation = 0  # bumped when the screen drops what it shows (retry): older polls are ignored
        self._last_reap = 0.0
        self.eta = job_estimator(None)  # the smoothed ETA, fed each poll's step
        self._gone = False

    @property
    def store(self) -> Store:
        return self.app.store  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static(f"[b]tunedeck[/b] · run {self.job_id}", id="topbar")
        yield Static("Loading…", id="run-header")
        with TabbedContent(id="run-tabs", initial="charts"):
            with TabPane("1 Charts", id="charts"):
                with Vertical(id="charts-body"):
                    charts = [MetricChart(title, series, lower_is_better=lower, id=f"chart-{name}")
                              for name, title, series, lower in CHARTS]  # fmt: skip
                    yield charts[0]
                    with Horizontal(id="charts-small"):
                        yield from charts[1:]
            with TabPane("2 Metrics", id="metrics"):
                yield LiveTable([("name", "Metric"), ("value", "Latest"), ("step", "Step")], id="metrics-body")
                yield Static("No metrics yet: they appear from the first logged step.", id="metrics-empty",
                             classes="empty")  # fmt: skip
            with TabPane("3 Log", id="log"):
                yield Static("", id="log-status")
                yield SearchBox()
                yield LogTail(id="log-body")
            with TabPane("4 Config", id="config"):
                with VerticalScroll(id="config-body", classes="tab-body"):
                    yield Static("Loading…", id="config-text")
        yield Footer()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Only the actions that apply to the run as it is now show in the footer and answer their key: a
        completed run offers no cancel or resume, a running one no resume, retry or delete."""
        d = self.detail
        if action == "cancel_run":
            return d is not None and d.status in ACTIVE and not d.cancel_requested
        if action in ("resume_run", "retry_run"):
            return d is not None and d.status in REQUEUABLE
        if action == "delete_run":
            return d is not None and d.status not in ACTIVE
        if action == "edit_copy":
            return d is not None and isinstance(d.config.get("run"), dict)
        if action == "follow_log":
            return self.log_follow_allowed()
        return True

    def on_mount(self) -> None:
        self.show_log_status()
        self.query_one("#charts-body").focus()
        self.poll()
        self.set_interval(POLL_SECONDS, self.poll)

    # -- polling -----------------------------------------------------------------

    def poll(self) -> None:
        """Read what changed in a thread (one read at a time); `_apply` shows it."""
        if self._polling or self._gone:
            return
        self._polling = True
        work = partial(self._poll, (self._generation, self._log_generation), self.store, self.job_id, self._since,
                       self._log_path, self._log_offset)  # fmt: skip
        self.run_worker(work, group="poll", thread=True, exit_on_error=False)
        detail = self.detail
        if detail is not None and detail.status == "running" and time.monotonic() - self._last_reap > REAP_EVERY_S:
            self._last_reap = time.monotonic()
            self.run_worker(partial(reap_stale_jobs, self.store), group="reap", thread=True, exit_on_error=False)

    @staticmethod
    def _poll(generation: tuple[int, int], *args: Any) -> tuple[tuple[int, int], RunPoll]:
        return generation, poll_run(*args)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if self.search_worker_changed(event):
            return
        worker = event.worker
        group = worker.group
        if group == "poll":
            if event.state not in (WorkerState.SUCCESS, WorkerState.ERROR, WorkerState.CANCELLED):
                return
            self._polling = False
            if event.state == WorkerState.SUCCESS:
                generation, poll = worker.result
                if generation == (self._generation, self._log_generation):
                    self._apply(poll)
            elif isinstance(worker.error, NotFound):
                self._gone = True
                self.query_one("#run-header", Static).update(f"[red]Run {self.job_id} no longer exists.[/red]")
            elif event.state == WorkerState.ERROR:
                self.query_one("#run-header", Static).update(escape(f"Could not read run {self.job_id}: "
                                                                    f"{worker.error}"))  # fmt: skip
        elif group == "delete" and event.state == WorkerState.SUCCESS:
            self.notify(worker.result)
            self.app.pop_screen()
        elif group in ("cancel", "requeue", "delete"):
            if event.state == WorkerState.SUCCESS:
                self._action_done(group, worker.result)
            elif event.state == WorkerState.ERROR:
                self.notify(error_text(worker.error), title="Not done", severity="error")
                self.poll()

    def _apply(self, poll: RunPoll) -> None:
        previous = self.detail
        self.detail = detail = poll.detail
        if detail.kind != "train":  # not a run: the job screen shows it (its progress, stage and log)
            from tui.screens.job import JobScreen

            self._gone = True
            self.app.switch_screen(JobScreen(detail.id))
            return
        if poll.restart:
            self._reset_metrics()
            self.eta.reset()
        if detail.status == "running":
            observe_job(self.eta, detail.step, detail.total_steps, detail.progress, detail.heartbeat_at)
        if previous is None or (previous.status, previous.cancel_requested) != (detail.status,
                                                                                detail.cancel_requested):
            self.refresh_bindings()
        for step, name, value in poll.points:
            seen = self.latest.get(name)
            if seen is None or step >= seen[0]:
                self.latest[name] = (step, value)
            self._since = max(self._since, step)
        touched: set[MetricChart] = set()
        for metric, chart_id in CHARTED.items():
            points = [(s, v) for s, n, v in poll.points if n == metric]
            if points:
                chart = self.query_one(f"#chart-{chart_id}", MetricChart)
                chart.extend(points, metric, redraw=False)
                touched.add(chart)
        for chart in touched:  # once per poll, with the header below: both show the same read
            chart.redraw()
        self._show_metrics()
        if poll.log is not None:
            self.show_log(poll.log_path, poll.log)
        self._show_header()
        text = config_text(detail)
        if text != self.config_shown:
            self.config_shown = text
            from rich.syntax import Syntax  # pygments loads when a run first shows, not at start-up

            self.query_one("#config-text", Static).update(Syntax(text, "yaml", theme="ansi_dark",
                                                                 background_color="default", word_wrap=True))
        if previous is not None and previous.status != detail.status and detail.status not in ACTIVE:
            severity = "information" if detail.status == "completed" else "warning"
            self.notify(f"Run {detail.id} {detail.status}.", severity=severity)  # type: ignore[arg-type]

    def _reset_metrics(self) -> None:
        self.latest = {}
        self._since = -1
        for chart in self.query(MetricChart):
            chart.clear()

    # -- showing -----------------------------------------------------------------

    def _show_header(self) -> None:
        d = self.detail
        if d is None:
            return
        run = d.config.get("run") or {}
        title = f"{run.get('objective', '?')}/{run.get('method', '?')}" if d.kind == "train" and run else d.kind
        name = f" [b]{escape(d.name)}[/b]" if d.name else ""
        self.query_one("#topbar", Static).update(
            f"[b]tunedeck[/b] · project [b]{escape(d.project)}[/b] · run {d.id}{name} ({escape(title)})"
        )
        total = d.total_steps
        steps = f"step {d.step}/{total}" if total else f"step {d.step}"
        line = f"{status_text(d.status)}  {steps}  {progress_bar(d.progress, 10)}"
        loss = self.latest.get("loss")
        if loss is not None:
            line += f"  loss [b]{fmt_value(loss[1])}[/b]"
        if d.status == "running":  # the smoothed ETA, as `--wait` and the Jobs screen show it
            eta = self.eta.eta(time.time())
            if eta is None and "eta_s" in self.latest:  # until two reads have seen steps go by: the engine's
                eta = self.latest["eta_s"][1]
            line += f"  ETA {eta_text(eta)}"
        line += f"  · {escape(d.slot)}"
        second = self._second_line(d, run)
        self.query_one("#run-header", Static).update(f"{line}\n{second}")

    def _second_line(self, d: RunDetail, run: dict[str, Any]) -> str:
        if d.status == "running" and d.cancel_requested:
            return "[yellow]cancel requested: it saves a checkpoint and stops at the next step[/yellow]"
        keys = " · r resumes · R starts over" if d.kind == "train" else ""
        if d.status == "cancelled":
            return f"[yellow]cancelled at step {d.step}[/yellow][dim]{keys}[/dim]"
        if d.status in ("failed", "interrupted"):
            first = first_line(d.error or "", "no error recorded")
            return f"[red]{escape(clip(first, 76 - len(keys)))}[/red][dim]{keys}[/dim]"
        if d.status == "queued":
            return f"[dim]waiting for the {escape(d.slot)} runner (one run at a time per device)[/dim]"
        model = Path(str(d.config.get("model_path") or run.get("model") or "?")).name
        parts = [f"{escape(model)} on {escape(str(run.get('dataset', '?')))}"]
        if d.status == "completed":
            if d.result.get("eval_loss") is not None:
                parts.append(f"eval loss {fmt_value(d.result['eval_loss'])}")
            if d.result.get("artifact_id") is not None:
                parts.append(f"artifact {d.result['artifact_id']}")
            parts.append(f"finished {ago(d.finished_at)}")
        elif d.started_at:
            parts.append(f"started {ago(d.started_at)}")
        return "[dim]" + " · ".join(parts) + "[/dim]"

    def _show_metrics(self) -> None:
        table = self.query_one("#metrics-body", LiveTable)
        rows = [(name, (name, fmt_value(value, 6), str(step))) for name, (step, value) in sorted(self.latest.items())]
        table.sync(rows)
        table.display = bool(rows)
        self.query_one("#metrics-empty").display = not rows

    # -- tabs --------------------------------------------------------------------

    @property
    def active_tab(self) -> str:
        return self.query_one("#run-tabs", TabbedContent).active

    def action_show_tab(self, tab_id: str) -> None:
        self.query_one("#run-tabs", TabbedContent).active = tab_id

    @on(TabbedContent.TabActivated, "#run-tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id or ""
        if self.query_one(SearchBox).display:
            return  # / opened the search box: it keeps the focus
        if not (self.focused is not None and self.focused is self.query_one("#run-tabs").query_one("Tabs")):
            self.query_one(f"#{tab}-body").focus()

    def action_toggle_smoothing(self) -> None:
        """s: draw the charts smoothed (an EMA over the raw curve, which stays dim behind) or raw."""
        for chart in self.query(MetricChart):
            chart.set_view(smoothing=not chart.smoothing)

    def action_toggle_log(self) -> None:
        """l: a log scale on the charts' y axes, or linear."""
        for chart in self.query(MetricChart):
            chart.set_view(log_scale=not chart.log_scale)

    def action_back(self) -> None:
        self.dismiss()

    # -- actions -----------------------------------------------------------------

    def _ready(self) -> RunDetail | None:
        if self.detail is None:
            self.notify("The run is still loading.", severity="warning")
        return self.detail

    def action_cancel_run(self) -> None:
        d = self._ready()
        if d is None:
            return
        refusal = cancel_refusal(d.id, d.status, "run")
        if refusal:
            self.notify(refusal, severity="warning")
            return
        if d.cancel_requested:
            self.notify(f"Run {d.id} is already stopping.")
            return
        body = (f"Stop run [b]{d.id}[/b] at step {d.step}? It saves a checkpoint first; r resumes it later."
                if d.status == "running" else f"Run [b]{d.id}[/b] has not started; cancelling takes it off the queue.")
        self.app.push_screen(ConfirmDialog("Cancel run", body, "y cancel the run"), self._confirmed_cancel)

    def _confirmed_cancel(self, yes: bool | None) -> None:
        if yes:
            self.run_worker(partial(cancel_job, self.store, self.job_id), group="cancel", thread=True,
                            exit_on_error=False)  # fmt: skip

    def action_delete_run(self) -> None:
        d = self._ready()
        if d is None:
            return
        if d.kind != "train" or d.status in ACTIVE:
            what = f"a {d.kind} job" if d.kind != "train" else d.status
            self.notify(f"Run {d.id} is {what}; only ended training runs can be deleted here.", severity="warning")
            return
        body = (f"Delete run [b]{d.id}[/b] with its metrics, log and checkpoints, and the artifacts it made "
                "(with what derives from them)? This cannot be undone.")
        self.app.push_screen(ConfirmDialog("Delete run", body, "y delete the run"), self._confirmed_delete)

    def _confirmed_delete(self, yes: bool | None) -> None:
        if yes:
            self.run_worker(partial(delete_run_text, self.store, self.job_id), group="delete", thread=True,
                            exit_on_error=False)  # fmt: skip

    def _requeue_check(self, fresh: bool) -> RunDetail | None:
        """The run if it can be resumed (retried with `fresh`) as it is now; else says why (core.runs' words)."""
        d = self._ready()
        if d is None:
            return None
        refusal = requeue_refusal(d.id, d.kind, d.status, fresh)
        if refusal:
            self.notify(refusal, severity="warning")
            return None
        return d

    def action_resume_run(self) -> None:
        if self._requeue_check(fresh=False) is not None:
            self.run_worker(partial(resume_run, self.store, self.job_id), group="requeue", thread=True,
                            exit_on_error=False)  # fmt: skip

    def action_retry_run(self) -> None:
        d = self._requeue_check(fresh=True)
        if d is None:
            return
        body = (f"Run [b]{d.id}[/b] again from the start? Its checkpoints and its {len(self.latest)} metric(s) "
                "are deleted first.")
        self.app.push_screen(ConfirmDialog("Retry run", body, "y retry from the start"), self._confirmed_retry)

    def _confirmed_retry(self, yes: bool | None) -> None:
        if yes:
            self.run_worker(partial(retry_run, self.store, self.job_id), group="requeue", thread=True,
                            exit_on_error=False)  # fmt: skip

    def _action_done(self, group: str, result: str) -> None:
        if group == "cancel":
            if result == "cancelled":
                self.notify(f"Run {self.job_id} cancelled before it started.")
            else:
                self.notify(f"Cancel requested: run {self.job_id} saves a checkpoint and stops.")
        else:
            if result.endswith("from the start"):
                self._generation += 1
                self._reset_metrics()
                self._show_metrics()
            self.notify(result)
        self.poll()

    def action_edit_copy(self) -> None:
        d = self._ready()
        if d is None:
            return
        run = d.config.get("run")
        if d.kind != "train" or not isinstance(run, dict):
            self.notify(f"Job {d.id} has no run configuration to copy.", severity="warning")
            return
        from tui.screens.new_run import NewRunForm

        form = NewRunForm(self.store, d.project, initial=run, title=f"New run from run [b]{d.id}[/b]'s config")
        self.app.push_screen(form, self._copied)

    def _copied(self, job_id: int | None) -> None:
        if job_id is None:
            return
        self.notify(f"Run {job_id} queued.")
        self.app.switch_screen(RunScreen(job_id))
