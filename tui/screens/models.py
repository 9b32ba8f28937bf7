"""The project's Models tab: base models being added (with their progress), failed adds, and the models at hand
(registered, trained in full, merged); the form that adds one (`tunedeck model add` in the TUI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.markup import escape
from textual.widgets import Static

from core.models import source_text
from store.db import Store
from store.views import json_dict
from tui.screens._common import ago, clip, size_text
from tui.screens.forms import ActionDialog, FormField
from tui.screens.import_dialog import ImportErrorDialog
from tui.widgets.metric_chart import progress_bar

ADD_KIND = "model-add"
MODEL_KINDS = ("model", "merged")
COLUMNS = [("name", "Name"), ("kind", "Kind"), ("source", "Source"), ("size", "Size"), ("state", "State")]
EMPTY = ("No models in this project yet. Press [b]m[/b] to add one: a model folder, a GGUF file or a hub id "
         "(from a shell: tunedeck model add PROJECT SOURCE).")


@dataclass(frozen=True)
class ModelItem:
    """What one Models-tab row stands for: a model artifact, or an add job (running or failed)."""

    kind: str  # "model", "adding" or "failed"
    id: int  # the artifact id, or the job's
    name: str
    detail: str = ""  # the note of a dequantized GGUF, or a failed add's error


def model_rows(jobs: list[Any], artifacts: list[Any]) -> tuple[list[tuple[str, tuple]], dict[str, ModelItem]]:
    """Adds in progress, adds that failed (until one of the same name succeeds), then the models, newest first."""
    names = {a.name for a in artifacts if a.kind in MODEL_KINDS}
    rows: list[tuple[str, tuple]] = []
    items: dict[str, ModelItem] = {}
    for j in jobs:
        if j.kind != ADD_KIND or j.status == "completed":
            continue
        name = (j.name or "").removeprefix("add model ")
        key = f"job-{j.id}"
        if j.status in ("queued", "running"):
            state = "[dim]queued[/]" if j.status == "queued" else f"[cyan]{progress_bar(j.progress or 0.0, 5)}[/]"
            items[key] = ModelItem("adding", j.id, name)
        elif name in names:
            continue
        else:
            state = f"[red]✗ {j.status}[/]"
            items[key] = ModelItem("failed", j.id, name, j.error or "")
        rows.append((key, (escape(clip(name, 24)), "adding", "…", "…", state)))
    for a in artifacts:
        if a.kind not in MODEL_KINDS:
            continue
        meta = json_dict(a.meta)
        key = str(a.id)
        items[key] = ModelItem("model", a.id, a.name, str(meta.get("note") or ""))
        rows.append((key, (escape(clip(a.name, 24)), a.kind, escape(clip(source_text(meta), 30)), size_text(a.size),
                           ago(a.created_at))))
    return rows, items


def _queue(store: Store, project: str, values: dict[str, str]) -> int:
    from engine.models.queue import queue_model_add  # the engine loads in this worker, never at start-up

    return queue_model_add(store, project, values["source"], name=values.get("name") or None,
                           dtype=values.get("dtype") or "auto")


def add_model_dialog(store: Store, project: str) -> ActionDialog:
    """The add-model form: SOURCE (folder, GGUF or hub id), name, dtype; enter queues the job (refusals, e.g. an
    unreachable hub id, stay in the form), and the form returns the job id."""
    from functools import partial

    fields = [FormField("source", "Source: a model folder, a .gguf file or a hub id (org/name)",
                        placeholder="/path/to/model, model.gguf or HuggingFaceTB/SmolLM2-135M-Instruct"),
              FormField("name", "Name", placeholder="default: the folder, file or repo name"),
              FormField("dtype", "Dtype of a GGUF's dequantized weights (auto, fp32, bf16, fp16)", value="auto")]
    return ActionDialog(f"Add a base model to [b]{escape(project)}[/b]", fields, partial(_queue, store, project))


class AddErrorDialog(ImportErrorDialog):
    """The whole error of a failed model add, scrollable; esc or enter closes it."""

    HELP_TITLE = "Model add error"

    def compose(self) -> ComposeResult:
        with Vertical(id="import-error", classes="dialog"):
            yield Static(f"Adding model [b]{escape(self.dataset_name)}[/b] failed (job {self.job_id})",
                         classes="dialog-title")
            with VerticalScroll(id="import-error-body"):
                yield Static(escape(self.error or "no error message was recorded"), id="import-error-text")
            yield Static("↑/↓ scroll · esc close · m on the Models tab adds a model", classes="hint")
