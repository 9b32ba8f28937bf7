"""The projects list: the screen tunedeck opens on."""

from __future__ import annotations

from functools import partial

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static
from textual.worker import Worker, WorkerState

from store.db import Store
from store.errors import NotFound, TunedeckError
from store.views import ProjectSummary, project_summaries, project_summary
from tui.screens.dialogs import ConfirmDeleteDialog, NewProjectDialog
from tui.widgets.formatting import ago, clip
from tui.widgets.live_table import LiveTable, TableFilter

NO_PROJECTS = ("No projects yet. Press [b]n[/b] to create one, or [b]D[/b] for the demo project: a tiny local "
               "model learning a small task on the CPU in minutes (the same as `tunedeck demo`).")
NAME_WIDTH = 24
COLUMNS = [
    ("name", "Name"),
    ("datasets", "Datasets"),
    ("runs", "Runs"),
    ("artifacts", "Artifacts"),
    ("active", "Active"),
    ("updated", "Last change"),
]


def _load(store: Store) -> list[ProjectSummary]:
    with store.raw() as conn:
        return project_summaries(conn)


def _make_demo(store: Store) -> dict:
    from core.projects import make_demo  # torch builds the tiny model: in this worker only

    return make_demo(store)


def _delete(store: Store, name: str, force: bool) -> str:
    from core.projects import delete_project  # SQLAlchemy loads on the first write, in this worker

    delete_project(store, name, force=force)
    return name


class ProjectsTable(LiveTable):
    """The projects list, whose footer names its filter key (the other tables' footers have no room)."""

    BINDINGS = [Binding("slash", "filter", "Filter", id="table.filter")]


class ProjectsScreen(Screen[None]):
    """Every project with its counts; refreshed from the store on a timer."""

    HELP_TITLE = "Projects"
    AUTO_FOCUS = ""  # focus is set once the first load shows (or hides) the tables
    BINDINGS = [
        Binding("n", "new_project", "New", id="projects.new_project"),
        # Priority, so that enter opens the highlighted project from the filter box too.
        Binding("enter", "open_project", "Open", priority=True, id="projects.open_project"),
        Binding("d", "delete_project", "Delete", id="projects.delete_project"),
        Binding("D", "demo", "Demo project", show=False, id="projects.demo"),  # offered by the empty list's line
        Binding("slash", "filter", "Filter", id="projects.filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="projects.clear_filter"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.projects: list[ProjectSummary] | None = None  # None until the first load
        self._visible: dict[str, ProjectSummary] = {}
        self._select_name: str | None = None
        self._last_error = ""

    @property
    def store(self) -> Store:
        return self.app.store  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static("[b]tunedeck[/b] · projects", id="topbar")
        yield TableFilter("projects", placeholder="filter · enter opens · esc clears", id="filter")
        yield ProjectsTable(COLUMNS, id="projects")
        yield Static("Loading…", id="empty", classes="empty")
        yield Static("", id="detail")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(self.app.refresh_seconds, self._tick)  # type: ignore[attr-defined]
        # The first read is one indexed plain-SQL query (a few ms even with 10,000 jobs), so it
        # runs inline: the first frame shows the projects instead of "Loading…". Later reads
        # go through a worker; so does this one if it fails (the error is reported from there).
        try:
            self.projects = _load(self.store)
        except Exception:
            self.reload()
        else:
            self._show()

    def on_screen_resume(self) -> None:
        self.reload()

    def _tick(self) -> None:
        if self.is_current:
            self.reload()

    # -- loading -----------------------------------------------------------------

    def reload(self) -> None:
        """Read the projects in a thread; `_show` puts them on screen."""
        self.run_worker(partial(_load, self.store), group="load", thread=True, exclusive=True, exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group == "load":
            if event.state == WorkerState.SUCCESS:
                self._last_error = ""
                self.projects = worker.result
                self._show()
            elif event.state == WorkerState.ERROR:
                self._report(f"Could not read projects: {worker.error}")
        elif worker.group == "demo":
            if event.state == WorkerState.SUCCESS:
                result = worker.result
                job = result.get("import_job_id")
                note = f"; its dataset imports as job {job}" if job is not None else ""
                self.notify(f"Demo project {result['project']} ready{note}. Open it and press n for a run.")
                self._select_name = str(result["project"])
                self.reload()
            elif event.state == WorkerState.ERROR:
                self.notify(f"Could not make the demo project: {worker.error}", title="No demo", severity="error")
        elif worker.group == "delete":
            if event.state == WorkerState.SUCCESS:
                self.notify(f"Deleted project {worker.result}.")
                self.reload()
            elif event.state == WorkerState.ERROR:
                error = worker.error
                message = str(error) if isinstance(error, TunedeckError) else f"Could not delete: {error}"
                self.notify(message, title="Not deleted", severity="error")
                self.reload()

    def _report(self, message: str) -> None:
        if message != self._last_error:
            self._last_error = message
            self.notify(message, severity="error")

    def _show(self) -> None:
        if self.projects is None:
            return
        self._visible = {str(p.id): p for p in self.projects}
        rows = [
            (
                str(p.id),
                (
                    clip(p.name, NAME_WIDTH),
                    str(p.datasets),
                    str(p.runs),
                    str(p.artifacts),
                    str(p.active_jobs) if p.active_jobs else "-",
                    ago(p.updated_at),
                ),
            )
            for p in self.projects
        ]
        select = None
        if self._select_name is not None:
            select = next((key for key, p in self._visible.items() if p.name == self._select_name), None)
            if select is not None:
                self._select_name = None
        table = self.query_one("#projects", LiveTable)
        table.sync(rows, select=select)
        shown = bool(table.shown)
        table.display = shown
        empty = self.query_one("#empty", Static)
        empty.display = not shown
        if not self.projects:
            empty.update(NO_PROJECTS)
        elif not shown:
            needle = escape(repr(table.filter_text))
            empty.update(f"No project matches {needle}. Press [b]esc[/b] to clear the filter.")
        if shown and self.focused is None:
            table.focus()
        self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#detail", Static)
        project = self.current_project
        if project is None:
            detail.update("")
            return
        text = f"[b]{escape(project.name)}[/b]"
        text += f" — {escape(project.description)}" if project.description else " · no description"
        if project.active_jobs:
            text += f" · {project.active_jobs} job(s) queued or running"
        detail.update(text)

    @on(DataTable.RowHighlighted)
    def _highlighted(self) -> None:
        self._show_detail()

    @on(DataTable.RowSelected)
    def _selected(self) -> None:
        self.action_open_project()

    @property
    def current_project(self) -> ProjectSummary | None:
        """The project under the cursor, if any is shown."""
        key = self.query_one("#projects", LiveTable).current_key
        return self._visible.get(key) if key is not None else None

    # -- filter ------------------------------------------------------------------

    # The table filters itself (tui/widgets/live_table.py); these keys reach it from anywhere on the screen.

    def action_filter(self) -> None:
        self.query_one("#projects", LiveTable).action_filter()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", TableFilter)
        if box.display:
            box.action_clear()

    @on(Input.Changed, "#filter")
    def _filter_changed(self) -> None:
        self._show()  # the empty-list line names the filter

    # -- actions -----------------------------------------------------------------

    def action_new_project(self) -> None:
        self.app.push_screen(NewProjectDialog(self.store), self._created)

    def _created(self, name: str | None) -> None:
        if not name:
            return
        from tui.screens.guide import GuideScreen

        # the decision guide first (esc skips it); the new project is selected either way
        self.app.push_screen(GuideScreen(self.store, name), partial(self._guided, name))
        self.notify(f"Created project {name}.")
        needle = self.query_one("#projects", LiveTable).filter_text
        if needle and needle.lower() not in name.lower():
            self.action_clear_filter()
        self._select_name = name
        self.reload()

    def action_demo(self) -> None:
        """D: build the demo project (model, data, import job) in a thread; the list stays live meanwhile."""
        if any(w.group == "demo" and not w.is_finished for w in self.workers):
            self.notify("The demo project is being made already.")
            return
        self.notify("Making the demo project: a tiny model and its data (a few seconds)…")
        self.run_worker(partial(_make_demo, self.store), group="demo", thread=True, exit_on_error=False)

    def _guided(self, name: str, guide: dict | None) -> None:
        if guide:
            self.notify(f"{name}: the guide says {guide['verdict']} (shown on the project screen).")

    def action_open_project(self) -> None:
        project = self.current_project
        if project is None:
            self.notify("No project to open. Press n to create one.", severity="warning")
            return
        from tui.screens.project import ProjectScreen  # loaded on first open, not at start-up

        self.app.push_screen(ProjectScreen(project.name))

    def action_delete_project(self) -> None:
        project = self.current_project
        if project is None:
            return
        try:
            with self.store.raw() as conn:
                project = project_summary(conn, project.name)
        except NotFound:
            self.notify(f"Project {project.name} no longer exists.", severity="warning")
            self.reload()
            return
        except TunedeckError as error:
            self.notify(str(error), severity="error")
            return
        name = project.name

        def confirmed(choice: str | None) -> None:
            if choice in ("delete", "force"):
                self.run_worker(
                    partial(_delete, self.store, name, choice == "force"),
                    group="delete",
                    thread=True,
                    exit_on_error=False,
                )

        self.app.push_screen(ConfirmDeleteDialog(project), confirmed)
