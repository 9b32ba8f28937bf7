"""The Models tab's dialogs: the form that adds a base model (`tunedeck model add` in the TUI) and a failed add's
error. The tab's rows are tui/widgets/model_rows.py's."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.markup import escape
from textual.widgets import Static

from store.db import Store
from tui.screens.import_dialog import ImportErrorDialog
from tui.widgets.submit_form import ActionDialog, FormField


def _queue(store: Store, project: str, values: dict[str, str]) -> int:
    from core.models import queue_model_add  # the engine loads in this worker, never at start-up

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
