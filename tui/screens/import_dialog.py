"""The import-dataset form, and the box that shows why an import failed."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Select, Static
from textual.worker import Worker

from store.db import Store
from tui.widgets.path_input import PathInput, path_candidates
from tui.widgets.submit_form import SubmitInWorker

SOURCE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet", ".txt", ".gz")  # as engine.datasets.queue's
FORMATS = ("auto", "alpaca", "chat", "sharegpt", "input_output", "preference", "kto", "text")
DEDUP = ("exact", "near", "none")
ON_ERROR = ("fail", "skip")
DEFAULT_VAL_FRACTION = "0.1"
DEFAULT_SEED = "0"
DEFAULT_MAX_LENGTH = "2048"
MATCHES_SHOWN = 6


class FormError(ValueError):
    """A field's value is not usable; `field` is the id of the box to fix."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Queued:
    """What the dialog returns once the import is queued."""

    job_id: int
    name: str


def _queue(store: Store, project: str, source: str, name: str | None, options: dict[str, Any]) -> Queued:
    from core.datasets import queue_import  # the engine loads in this worker, never at start-up

    job_id = queue_import(store, project, source, name=name, **options)
    with store.raw() as conn:
        row = conn.execute("SELECT name FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return Queued(job_id, row[0] if row else (name or ""))


def default_name(source: str) -> str:
    """The name an import of `source` gets when none is given (as `queue_import` picks it)."""
    source = source.strip().rstrip("/")
    if not source:
        return ""
    path = Path(source).expanduser()
    if path.is_file() or path.suffix:
        name = path.name[:-3] if path.name.lower().endswith(".gz") else path.name
        stem, dot, suffix = name.rpartition(".")
        return stem if dot and stem and f".{suffix.lower()}" in SOURCE_SUFFIXES else name
    return path.name


def _choice(options: tuple[str, ...], value: str, widget_id: str) -> Select[str]:
    return Select([(o, o) for o in options], value=value, allow_blank=False, compact=True, id=widget_id)


class ImportDialog(SubmitInWorker, ModalScreen[Queued | None]):
    """Source path (with completion), name, format, split, dedup and the rest; enter imports, esc cancels.

    Problems found here or by `queue_import` stay in the form; the form closes once the job is queued.
    """

    HELP_TITLE = "Import dataset"
    BINDINGS = [
        Binding("escape", "cancel", "Cancel", id="import.cancel"),
        # Priority, so that enter imports from a closed list too; an open list takes enter itself.
        Binding("enter", "submit", "Import", priority=True, id="import.submit"),
    ]

    submit_failure = "could not queue the import"

    def __init__(self, store: Store, project: str) -> None:
        super().__init__()
        self.store = store
        self.project = project

    def compose(self) -> ComposeResult:
        with Vertical(id="import-dialog", classes="dialog"):
            yield Static(f"Import a dataset into [b]{escape(self.project)}[/b]", classes="dialog-title")
            with Horizontal(classes="field"):
                yield Label("Source", classes="field-label")
                yield PathInput(placeholder="path to .jsonl/.json/.csv/.parquet/.txt (.gz) or a folder", id="source",
                                compact=True, suffixes=SOURCE_SUFFIXES)  # fmt: skip
            yield Static("", id="source-matches", classes="field-hint")
            with Horizontal(classes="field"):
                yield Label("Name", classes="field-label")
                yield Input(placeholder="default: the file name", id="name", compact=True, max_length=64)
            with Horizontal(classes="field"):
                yield Label("Format", classes="field-label")
                yield _choice(FORMATS, "auto", "format")
                yield Label("Dedup", classes="field-label2")
                yield _choice(DEDUP, "exact", "dedup")
            with Horizontal(classes="field"):
                yield Label("Val fraction", classes="field-label")
                yield Input(DEFAULT_VAL_FRACTION, id="val-fraction", compact=True, classes="short")
                yield Label("Seed", classes="field-label2")
                yield Input(DEFAULT_SEED, id="seed", compact=True, classes="short")
            with Horizontal(classes="field"):
                yield Label("On error", classes="field-label")
                yield _choice(ON_ERROR, "fail", "on-error")
                yield Label("Max length", classes="field-label2")
                yield Input(DEFAULT_MAX_LENGTH, id="max-length", compact=True, classes="short")
            with Horizontal(classes="field"):
                yield Label("Tokenizer", classes="field-label")
                yield PathInput(placeholder="optional: model folder, for token lengths", id="tokenizer",
                                compact=True, suffixes=(".gguf",))  # fmt: skip
            yield Static("", id="error", classes="error")
            yield Static("enter import · tab next or complete · space opens a list · esc cancel",
                         classes="hint")  # fmt: skip

    def on_mount(self) -> None:
        self.show_error("")
        self._show_matches("")
        self.query_one("#source", Input).focus()

    # -- fields ------------------------------------------------------------------

    @on(Input.Changed, "#source")
    def _source_changed(self, event: Input.Changed) -> None:
        self._show_matches(event.value)
        name = default_name(event.value)
        self.query_one("#name", Input).placeholder = f"default: {name}" if name else "default: the file name"

    def _show_matches(self, value: str) -> None:
        box = self.query_one("#source-matches", Static)
        matches = path_candidates(value) if value else []
        if not value:
            box.update("[dim]tab completes folders and .jsonl .json .csv .parquet .txt .gz files[/dim]")
            return
        if not matches:
            box.update("[dim]no matching folder or data file[/dim]" if not Path(value).expanduser().exists() else "")
            return
        names = [m[len(value) - len(value.rpartition("/")[2]) :] for m in matches]
        shown = "  ".join(escape(n) for n in names[:MATCHES_SHOWN])
        more = f"  [dim](+{len(names) - MATCHES_SHOWN} more)[/dim]" if len(names) > MATCHES_SHOWN else ""
        box.update(shown + more)

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self) -> None:
        self.show_error("")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "submit" and any(select.expanded for select in self.query(Select)):
            return False  # enter picks the highlighted choice of an open list
        return True

    # -- submit ------------------------------------------------------------------

    def _value(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value.strip()

    def _choice(self, widget_id: str) -> str:
        return str(self.query_one(f"#{widget_id}", Select).value)

    def read_form(self) -> tuple[str, str | None, dict[str, Any]]:
        """(source, name or None, importer options) from the fields; FormError says what is wrong where."""
        source = self._value("source")
        if not source:
            raise FormError("source", "source: give the path of a .jsonl, .json, .csv, .parquet or .txt file (or "
                                      "gzipped) or a folder")
        try:
            val_fraction = float(self._value("val-fraction") or DEFAULT_VAL_FRACTION)
        except ValueError:
            raise FormError("val-fraction", f"val fraction: {self._value('val-fraction')!r} is not a number "
                                             "(e.g. 0.1)") from None  # fmt: skip
        if not 0 <= val_fraction < 1:
            raise FormError("val-fraction", "val fraction: must be at least 0 and below 1 "
                                            "(e.g. 0.1 keeps 10% for validation)")  # fmt: skip
        try:
            seed = int(self._value("seed") or DEFAULT_SEED)
        except ValueError:
            raise FormError("seed", f"seed: {self._value('seed')!r} is not a whole number") from None
        try:
            max_length = int(self._value("max-length") or DEFAULT_MAX_LENGTH)
        except ValueError:
            raise FormError("max-length", f"max length: {self._value('max-length')!r} is not a whole number") from None
        if max_length < 1:
            raise FormError("max-length", "max length: must be a positive number of tokens")
        tokenizer = self._value("tokenizer") or None
        if tokenizer and tokenizer.startswith(("/", ".", "~")) and not Path(tokenizer).expanduser().exists():
            raise FormError("tokenizer", f"tokenizer: {tokenizer}: no such file or folder")
        options = {
            "format": self._choice("format"),
            "val_fraction": val_fraction,
            "seed": seed,
            "dedup": self._choice("dedup"),
            "on_error": self._choice("on-error"),
            "tokenizer": tokenizer,
            "max_length": max_length,
        }
        return source, self._value("name") or None, options

    def action_submit(self) -> None:
        if self._busy:
            return
        try:
            source, name, options = self.read_form()
        except FormError as error:
            self.show_error(str(error))
            self.query_one(f"#{error.field}").focus()
            return
        self.submit_work(partial(_queue, self.store, self.project, source, name, options))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.submit_finished(event)

    def action_cancel(self) -> None:
        self.dismiss(None)


class ImportErrorDialog(ModalScreen[None]):
    """The whole error of a failed import, scrollable; esc or enter closes it."""

    HELP_TITLE = "Import error"
    BINDINGS = [Binding("escape,enter,q", "close", "Close", id="import_error.close")]

    def __init__(self, name: str, job_id: int, error: str) -> None:
        super().__init__()
        self.dataset_name = name
        self.job_id = job_id
        self.error = error

    def compose(self) -> ComposeResult:
        with Vertical(id="import-error", classes="dialog"):
            yield Static(f"Import of [b]{escape(self.dataset_name)}[/b] failed (job {self.job_id})",
                         classes="dialog-title")  # fmt: skip
            with VerticalScroll(id="import-error-body"):
                yield Static(escape(self.error or "no error message was recorded"), id="import-error-text")
            yield Static("↑/↓ scroll · esc close · i on the Datasets tab imports again", classes="hint")

    def on_mount(self) -> None:
        self.query_one("#import-error-body").focus()

    def action_close(self) -> None:
        self.dismiss(None)
