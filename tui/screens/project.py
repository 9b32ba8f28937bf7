"""One project: its datasets, runs, artifacts and chat sessions, one tab each."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane, Tabs
from textual.worker import Worker, WorkerState

from store.db import Store
from store.errors import NotFound
from store.views import project_contents
from tui.screens._common import ago, clip, size_text
from tui.widgets.live_table import LiveTable, Row

TABS: list[tuple[str, str]] = [
    ("datasets", "Datasets"),
    ("runs", "Runs"),
    ("artifacts", "Artifacts"),
    ("chat", "Chat"),
]

COLUMNS: dict[str, list[tuple[str, str]]] = {
    "datasets": [("name", "Name"), ("format", "Format"), ("train", "Train"), ("val", "Val"), ("created", "Added")],
    "runs": [
        ("id", "ID"),
        ("kind", "Kind"),
        ("name", "Name"),
        ("status", "Status"),
        ("steps", "Step"),
        ("updated", "Updated"),
    ],
    "artifacts": [("kind", "Kind"), ("name", "Name"), ("size", "Size"), ("path", "Path")],
    "chat": [("title", "Title"), ("model", "Model"), ("updated", "Updated")],
}

# What each empty tab says. Name only what works today; later issues add the ways to fill a tab.
EMPTY: dict[str, str] = {
    "datasets": "No datasets in this project yet. From a shell: tunedeck dataset add PROJECT FILE.jsonl "
    "(tunedeck demo makes a demo project with a model and a dataset).",
    "runs": "No runs or other jobs in this project yet.",
    "artifacts": "No artifacts in this project yet. Models, adapters and exports made by runs appear here.",
    "chat": "No chat sessions in this project yet.",
}
EMPTY_KEYS = "Press [b]1[/b]-[b]4[/b] to switch tabs, [b]esc[/b] to go back to the projects, [b]?[/b] for all keys."


@dataclass
class ProjectData:
    """One read of everything the project screen shows."""

    name: str
    description: str
    rows: dict[str, list[Row]] = field(default_factory=dict)


def _load(store: Store, name: str) -> ProjectData:
    with store.raw() as conn:
        project = project_contents(conn, name)
    datasets, jobs, artifacts, chats = project.datasets, project.jobs, project.artifacts, project.chats
    data = ProjectData(project.name, project.description)
    data.rows["datasets"] = [
        (str(d.id), (clip(d.name, 30), d.format or "-", str(d.num_train), str(d.num_val), ago(d.created_at)))
        for d in datasets
    ]
    data.rows["runs"] = [
        (
            str(j.id),
            (
                str(j.id),
                j.kind,
                clip(j.name, 24) or "-",
                j.status,
                f"{j.step}/{j.total_steps}" if j.total_steps else str(j.step),
                ago(j.updated_at),
            ),
        )
        for j in jobs
    ]
    data.rows["artifacts"] = [
        (str(a.id), (a.kind, clip(a.name, 24) or "-", size_text(a.size), a.path)) for a in artifacts
    ]
    data.rows["chat"] = [
        (
            str(c.id),
            (clip(c.title, 30) or f"session {c.id}", clip(c.model_path.rsplit("/", 1)[-1], 30), ago(c.updated_at)),
        )
        for c in chats
    ]
    return data


class ProjectScreen(Screen[None]):
    """A project's tabs; keys 1-4 switch tabs, esc goes back to the projects list."""

    HELP_TITLE = "Project"
    AUTO_FOCUS = ""  # focus is set once the first load shows (or hides) the tables
    BINDINGS = [
        Binding("escape,backspace", "back", "Back"),
        Binding("1", "show_tab('datasets')", "Datasets tab", show=False),
        Binding("2", "show_tab('runs')", "Runs tab", show=False),
        Binding("3", "show_tab('artifacts')", "Artifacts tab", show=False),
        Binding("4", "show_tab('chat')", "Chat tab", show=False),
    ]

    def __init__(self, project_name: str) -> None:
        super().__init__()
        self.project_name = project_name
        self.data: ProjectData | None = None
        self._shown_once = False
        self._last_error = ""

    @property
    def store(self) -> Store:
        return self.app.store  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static(f"[b]tunedeck[/b] · project [b]{escape(self.project_name)}[/b]", id="topbar")
        yield Static("", id="description")
        with TabbedContent(id="tabs", initial="datasets"):
            for number, (tab_id, title) in enumerate(TABS, 1):
                with TabPane(f"{number} {title}", id=tab_id):
                    yield LiveTable(COLUMNS[tab_id], id=f"{tab_id}-table")
                    yield Static("Loading…", id=f"{tab_id}-empty", classes="empty")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(self.app.refresh_seconds, self._tick)  # type: ignore[attr-defined]

    def on_screen_resume(self) -> None:
        self.reload()

    def _tick(self) -> None:
        if self.is_current:
            self.reload()

    @property
    def active_tab(self) -> str:
        return self.query_one("#tabs", TabbedContent).active

    def reload(self) -> None:
        """Read the project in a thread; `_show` puts it on screen."""
        self.run_worker(
            partial(_load, self.store, self.project_name),
            group="load",
            thread=True,
            exclusive=True,
            exit_on_error=False,
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group != "load":
            return
        if event.state == WorkerState.SUCCESS:
            self._last_error = ""
            self.data = worker.result
            self._show()
        elif event.state == WorkerState.ERROR:
            if isinstance(worker.error, NotFound):
                if self.is_current:
                    self.notify(f"Project {self.project_name} no longer exists.", severity="warning")
                    self.dismiss()
                return
            message = f"Could not read project {self.project_name}: {worker.error}"
            if message != self._last_error:
                self._last_error = message
                self.notify(message, severity="error")

    def _show(self) -> None:
        data = self.data
        if data is None:
            return
        description = self.query_one("#description", Static)
        description.update(escape(data.description) if data.description else "[dim]no description[/dim]")
        for tab_id, _ in TABS:
            rows = data.rows.get(tab_id, [])
            table = self.query_one(f"#{tab_id}-table", LiveTable)
            table.sync(rows)
            table.display = bool(rows)
            empty = self.query_one(f"#{tab_id}-empty", Static)
            empty.display = not rows
            empty.update(f"{EMPTY[tab_id]}\n\n{EMPTY_KEYS}")
        self._fix_focus(force=not self._shown_once)
        self._shown_once = True

    def _fix_focus(self, force: bool = False) -> None:
        """Focus the active tab's table when it has rows, else the tab bar.

        Unless forced, focus on anything but a table (the tab bar) stays where it is.
        """
        focused = self.focused
        if not force and focused is not None and not isinstance(focused, LiveTable):
            return
        table = self.query_one(f"#{self.active_tab}-table", LiveTable)
        target = table if table.display else self.query_one("#tabs").query_one(Tabs)
        if focused is not target:
            target.focus()

    @on(TabbedContent.TabActivated)
    def _tab_activated(self) -> None:
        self.call_after_refresh(self._fix_focus)

    def action_show_tab(self, tab_id: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab_id

    def action_back(self) -> None:
        self.dismiss()
