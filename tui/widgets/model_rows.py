"""The project's Models tab rows: base models being added (with their progress), failed adds, and the models at
hand (registered, trained in full, merged). The project screen shows them; tui/screens/models.py has the dialogs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual.markup import escape

from core.models import source_text
from store.views import json_dict
from tui.widgets.formatting import ago, clip, size_text
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
