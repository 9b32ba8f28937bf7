"""One project: its datasets, runs, artifacts, chat sessions and models, one tab each."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane, Tabs
from textual.worker import Worker, WorkerState

from core.jobs import reap_stale_jobs
from store.db import Store
from store.errors import NotFound, first_line
from store.views import RunRow, json_dict, project_contents, project_runs
from tui.screens.project_datasets import DatasetsTab
from tui.screens.project_runs import RunsTab
from tui.widgets.formatting import ago, clip
from tui.widgets.live_table import LiveTable, Row
from tui.widgets.model_rows import COLUMNS as MODEL_COLUMNS
from tui.widgets.model_rows import EMPTY as MODELS_EMPTY
from tui.widgets.model_rows import ModelItem, model_rows
from tui.widgets.project_rows import DatasetItem, artifact_rows, dataset_rows, gguf_choices, run_cells

TABS: list[tuple[str, str]] = [
    ("datasets", "Datasets"),
    ("runs", "Runs"),
    ("artifacts", "Artifacts"),
    ("chat", "Chat"),
    ("models", "Models"),
]

COLUMNS: dict[str, list[tuple[str, str]]] = {
    "datasets": [
        ("name", "Name"),
        ("format", "Format"),
        ("train", "Train"),
        ("val", "Val"),
        ("verdict", "Verdict"),
        ("created", "Added"),
    ],
    # Training runs and the other jobs but dataset imports (those show on the Datasets tab). Kind is the
    # method of a training run (lora, qlora, full, dpo) when its config says, else the job's kind.
    "runs": [
        ("id", "ID"),
        ("kind", "Kind"),
        ("name", "Name"),
        ("status", "Status"),
        ("steps", "Step"),
        ("progress", "Progress"),
        ("loss", "Loss"),
        ("eta", "ETA"),
        ("device", "Dev"),
    ],
    "artifacts": [("kind", "Kind"), ("name", "Name"), ("size", "Size"), ("fidelity", "Fidelity"), ("path", "Path")],
    "chat": [("title", "Title"), ("model", "Model"), ("updated", "Updated")],
    "models": MODEL_COLUMNS,
}

# What each empty tab says. Name only what works today; later issues add the ways to fill a tab.
EMPTY: dict[str, str] = {
    "datasets": "No datasets in this project yet. Press [b]i[/b] to import a dataset "
    "(from a shell: tunedeck dataset add PROJECT FILE.jsonl).",
    "runs": "No runs in this project yet. Press [b]n[/b] to start a training run "
    "(from a shell: tunedeck run new PROJECT --preset smoke). Merges, conversions and evals: [b]j[/b] (all jobs).",
    "artifacts": "No artifacts in this project yet. Models, adapters and exports made by runs appear here.",
    "chat": "No chat sessions in this project yet. Press [b]c[/b] to chat with a GGUF model "
    "(from a shell: tunedeck chat MODEL.gguf --project NAME).",
    "models": MODELS_EMPTY,
}
EMPTY_KEYS = "Press [b]1[/b]-[b]5[/b] to switch tabs, [b]esc[/b] to go back to the projects, [b]?[/b] for all keys."


REAP_EVERY_S = 5.0  # how often a tab with running jobs checks for engines that stopped beating
@dataclass
class ProjectData:
    """One read of everything the project screen shows."""

    name: str
    description: str
    rows: dict[str, list[Row]] = field(default_factory=dict)
    datasets: dict[str, DatasetItem] = field(default_factory=dict)
    imports: dict[int, DatasetItem] = field(default_factory=dict)  # every import job read, by job id
    runs: dict[str, RunRow] = field(default_factory=dict)  # the Runs tab's rows, by key
    models: dict[str, ModelItem] = field(default_factory=dict)  # the Models tab's rows, by key
    ggufs: list[tuple[str, str]] = field(default_factory=list)  # (label, artifact id) the new-chat form offers
    guide: dict[str, Any] = field(default_factory=dict)  # the decision guide's outcome ({} when skipped)


def _load(store: Store, name: str) -> ProjectData:
    with store.raw() as conn:
        project = project_contents(conn, name)
        runs = project_runs(conn, project.id)
        guide = json_dict(conn.execute("SELECT guide FROM projects WHERE id = ?", (project.id,)).fetchone()[0])
    datasets, jobs, artifacts, chats = project.datasets, project.jobs, project.artifacts, project.chats
    data = ProjectData(project.name, project.description, guide=guide)
    data.rows["datasets"], data.datasets, data.imports = dataset_rows(datasets, jobs)
    now = time.time()
    data.runs = {str(r.id): r for r in runs}
    data.rows["runs"] = [(str(r.id), run_cells(r, now)) for r in runs]
    data.rows["artifacts"] = artifact_rows(artifacts, store.home)
    data.ggufs = gguf_choices(artifacts)
    data.rows["models"], data.models = model_rows(jobs, artifacts)
    data.rows["chat"] = [
        (
            str(c.id),
            (clip(c.title, 30) or f"session {c.id}", clip(c.model_path.rsplit("/", 1)[-1], 30), ago(c.updated_at)),
        )
        for c in chats
    ]
    return data


class ProjectScreen(DatasetsTab, RunsTab, Screen[None]):
    """A project's tabs; keys 1-5 switch tabs, esc goes back to the projects list."""

    HELP_TITLE = "Project"
    AUTO_FOCUS = ""  # focus is set once the first load shows (or hides) the tables
    BINDINGS = [
        Binding("escape,backspace", "back", "Back", id="project.back"),
        Binding("i", "import_dataset", "Import dataset", id="project.import_dataset"),
        Binding("d", "delete_dataset", "Delete dataset", show=False, id="project.delete_dataset"),
        Binding("n", "new_run", "New run", id="project.new_run"),
        Binding("c", "new_chat", "New chat", id="project.new_chat"),
        Binding("m", "add_model", "Add model", id="project.add_model"),
        Binding("enter", "open_row", "Open", show=False, id="project.open_row"),
        Binding("space", "mark_run", "Mark run to compare", show=False, id="project.mark_run"),
        Binding("C", "compare_runs", "Compare marked runs", show=False, id="project.compare_runs"),
        Binding("1", "show_tab('datasets')", "Datasets tab", show=False, id="project.show_tab_datasets"),
        Binding("2", "show_tab('runs')", "Runs tab", show=False, id="project.show_tab_runs"),
        Binding("3", "show_tab('artifacts')", "Artifacts tab", show=False, id="project.show_tab_artifacts"),
        Binding("4", "show_tab('chat')", "Chat tab", show=False, id="project.show_tab_chat"),
        Binding("5", "show_tab('models')", "Models tab", show=False, id="project.show_tab_models"),
    ]

    def __init__(self, project_name: str) -> None:
        super().__init__()
        self.project_name = project_name
        self.data: ProjectData | None = None
        self._shown_once = False
        self._last_error = ""
        self._select: dict[str, str] = {}  # tab -> row key to put the cursor on when it shows up
        self._follow_job: int | None = None  # the import queued from here: its dataset gets the cursor
        self._watched: set[int] = set()  # imports queued from here: their end is announced
        self._last_reap = 0.0
        self.marked: list[str] = []  # Runs-tab row keys marked with space, in marking order

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
                    if tab_id in ("datasets", "runs", "models"):
                        yield Static("", id=f"{tab_id}-detail", classes="tab-detail")
        yield Footer()

    def on_mount(self) -> None:
        self.set_interval(self.app.refresh_seconds, self._tick)  # type: ignore[attr-defined]

    def on_screen_resume(self) -> None:
        self.reload()

    def _tick(self) -> None:
        if self.is_current:
            self.reload()
            self._reap()

    def _reap(self) -> None:
        """Every few seconds while a job shows as running: mark those whose engine stopped beating interrupted."""
        data = self.data
        if data is None or not any(r.status == "running" for r in data.runs.values()):
            return
        if time.monotonic() - self._last_reap < REAP_EVERY_S:
            return
        self._last_reap = time.monotonic()
        self.run_worker(partial(reap_stale_jobs, self.store), group="reap", thread=True, exclusive=True,
                        exit_on_error=False)  # fmt: skip

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
        if worker.group == "delete-dataset":
            if event.state == WorkerState.SUCCESS:
                self.notify(str(worker.result), title="Deleted")
                self.reload()
            elif event.state == WorkerState.ERROR:
                self.notify(str(worker.error), title="Not deleted", severity="error")
            return
        if worker.group != "load":
            return
        if event.state == WorkerState.SUCCESS:
            self._last_error = ""
            previous, self.data = self.data, worker.result
            self._announce_imports(previous, self.data)
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
        from tui.widgets.guide_text import guide_summary

        text = escape(data.description) if data.description else "[dim]no description[/dim]"
        if summary := guide_summary(data.guide):
            text += f" · [b]{escape(summary)}[/b]"
        description.update(text)
        for tab_id, _ in TABS:
            rows = data.rows.get(tab_id, [])
            if tab_id == "runs":
                self.marked = [key for key in self.marked if key in data.runs]
                rows = [(key, (f"[b yellow]●[/]{cells[0]}", *cells[1:]) if key in self.marked else cells)
                        for key, cells in rows]  # fmt: skip
            table = self.query_one(f"#{tab_id}-table", LiveTable)
            select = self._select.get(tab_id)
            if select is not None and select in {key for key, _ in rows}:
                del self._select[tab_id]
            else:
                select = None
            table.sync(rows, select=select)
            table.display = bool(rows)
            empty = self.query_one(f"#{tab_id}-empty", Static)
            empty.display = not rows
            empty.update(f"{EMPTY[tab_id]}\n\n{EMPTY_KEYS}")
        self._fix_focus(force=not self._shown_once)
        self._shown_once = True
        self._show_dataset_detail()
        self._show_run_detail()
        self._show_model_detail()

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
        # A digit key means "go to that tab's rows": focus its table even if the tab bar had focus
        # (it gets focus when a tab is empty); left/right on the tab bar keep it there instead.
        self.call_after_refresh(self._fix_focus, True)

    def action_back(self) -> None:
        self.dismiss()

    def action_open_row(self) -> None:
        """enter on a tab without rows (the tab bar has focus): nothing to open, or the highlighted row."""
        if self.active_tab == "runs":
            self.action_open_run()
        elif self.active_tab == "chat":
            self.action_open_chat()
        elif self.active_tab == "artifacts":
            self.action_open_artifact()
        elif self.active_tab == "models":
            self.action_open_model()
        else:
            self.action_open_dataset()

    @on(DataTable.RowSelected, "#artifacts-table")
    def _artifact_selected(self) -> None:
        self.action_open_artifact()

    def action_open_artifact(self) -> None:
        """enter on the Artifacts tab: the highlighted artifact's lineage, checks and actions."""
        table = self.query_one("#artifacts-table", LiveTable)
        key = table.current_key if table.display else None
        if key is None:
            self.notify("No artifact to open. Runs, merges and conversions make them.", severity="warning")
            return
        from tui.screens.artifact import ArtifactScreen

        self.app.push_screen(ArtifactScreen(int(key)))

    # -- models ------------------------------------------------------------------

    @property
    def current_model(self) -> ModelItem | None:
        """The Models tab's row under the cursor."""
        if self.data is None:
            return None
        table = self.query_one("#models-table", LiveTable)
        key = table.current_key if table.display else None
        return self.data.models.get(key) if key is not None else None

    def _show_model_detail(self) -> None:
        detail = self.query_one("#models-detail", Static)
        item = self.current_model
        detail.display = item is not None
        if item is None:
            detail.update("")
        elif item.kind == "adding":
            detail.update(f"Adding [b]{escape(item.name)}[/b] (job {item.id}) · its log: enter on the Runs tab")
        elif item.kind == "failed":
            detail.update(f"[red]{escape(clip(first_line(item.detail or 'no error recorded'), 76))}[/red]\n"
                          "[dim]enter shows the whole error · m adds a model[/dim]")
        else:
            note = f"{escape(clip(item.detail, 76))}\n" if item.detail else ""
            detail.update(f"{note}[dim]enter opens artifact {item.id} · use it as --model {escape(item.name)}[/dim]")

    @on(DataTable.RowHighlighted, "#models-table")
    def _model_highlighted(self) -> None:
        self._show_model_detail()

    @on(DataTable.RowSelected, "#models-table")
    def _model_selected(self) -> None:
        self.action_open_model()

    def action_open_model(self) -> None:
        """enter on the Models tab: a model's artifact screen, a failed add's whole error."""
        item = self.current_model
        if item is None:
            self.notify("No model to open. Press m to add one.", severity="warning")
        elif item.kind == "model":
            from tui.screens.artifact import ArtifactScreen

            self.app.push_screen(ArtifactScreen(item.id))
        elif item.kind == "failed":
            from tui.screens.models import AddErrorDialog

            self.app.push_screen(AddErrorDialog(item.name, item.id, item.detail))
        else:
            self.notify(f"{item.name} is still being added (job {item.id}).")

    def action_add_model(self) -> None:
        from tui.screens.models import add_model_dialog

        self.app.push_screen(add_model_dialog(self.store, self.project_name), self._model_queued)

    def _model_queued(self, job_id: int | None) -> None:
        if job_id is None:
            return
        self.notify(f"Model add queued as job {job_id}.")
        self._select["models"] = f"job-{job_id}"
        self.action_show_tab("models")
        self.reload()

    # -- chat --------------------------------------------------------------------

    @on(DataTable.RowSelected, "#chat-table")
    def _chat_selected(self) -> None:
        self.action_open_chat()

    def action_open_chat(self) -> None:
        """enter on the Chat tab: reopen the highlighted session."""
        table = self.query_one("#chat-table", LiveTable)
        key = table.current_key if table.display else None
        if key is None:
            self.notify("No chat session to open. Press c to start one.", severity="warning")
            return
        from tui.screens.chat import ChatScreen

        self.app.push_screen(ChatScreen(session_id=int(key), project=self.project_name))

    def action_new_chat(self) -> None:
        """c: pick a GGUF model (and optionally a second one to compare) and open the chat."""
        from tui.screens.chat_new import NewChatDialog

        ggufs = self.data.ggufs if self.data is not None else []
        self.app.push_screen(NewChatDialog(ggufs), self._open_new_chat)

    def _open_new_chat(self, choice: Any) -> None:
        if choice is None:
            return
        if choice.compare:
            from tui.screens.chat_compare import ChatCompareScreen

            self.app.push_screen(ChatCompareScreen(choice.model, choice.compare))
        else:
            from tui.screens.chat import ChatScreen

            self.app.push_screen(ChatScreen(choice.model, project=self.project_name))
