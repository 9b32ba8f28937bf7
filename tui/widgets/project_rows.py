"""The project screen's table rows: the Datasets tab (imports in progress and failed, then the datasets), the
Runs tab's cells, the Artifacts tab's lineage tree and the GGUFs the new-chat form offers."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from textual.markup import escape

from core.progress import eta_text, fmt_value, progress_bar, remaining_eta
from store.views import RunRow, json_dict, lineage_order, listed_imports
from tui.widgets.artifact_text import badge, home_relative
from tui.widgets.badges import verdict_badge
from tui.widgets.formatting import ago, clip, size_text
from tui.widgets.live_table import Row
from tui.widgets.names import middle_clip

IMPORT_KIND = "dataset-import"
ACTIVE = ("queued", "running")
FAILED = ("failed", "cancelled", "interrupted")
PROGRESS_STYLE = {"running": "cyan", "completed": "green", "failed": "red", "interrupted": "red",
                  "cancelled": "yellow", "queued": "dim"}  # fmt: skip



@dataclass(frozen=True)
class DatasetItem:
    """What one row of the Datasets tab stands for: a dataset, or an import in progress or failed."""

    kind: str  # "dataset", "import" (queued or running) or "failed"
    id: int  # the dataset id, or the import job's id
    name: str
    status: str = ""
    progress: float = 0.0
    error: str = ""
    verdict: str = ""
    summary: str = ""  # the first checklist item that is not ok


def _first_problem(lint: dict[str, Any]) -> str:
    for item in lint.get("checklist") or ():
        if isinstance(item, dict) and item.get("status") in ("warn", "fail"):
            return f"{item.get('check', '')}: {item.get('detail', '')}"
    return ""


def dataset_rows(datasets: list[Any], jobs: list[Any]) -> tuple[list[Row], dict[str, DatasetItem], dict]:
    """The Datasets tab: imports in progress, then failed imports not retried since, then the datasets."""
    imports: dict[int, DatasetItem] = {}
    for j in jobs:
        if j.kind == IMPORT_KIND:
            kind = "import" if j.status in ACTIVE else "failed" if j.status in FAILED else "done"
            imports[j.id] = DatasetItem(kind, j.id, j.name or f"job {j.id}", j.status, j.progress or 0.0, j.error or "")
    rows: list[Row] = []
    items: dict[str, DatasetItem] = {}
    for j in listed_imports(datasets, jobs):  # the same rule as `tunedeck dataset list`
        item = imports[j.id]
        key = f"job-{j.id}"
        if item.kind == "import":
            state = "[dim]queued[/]" if j.status == "queued" else f"[cyan]⧗ {round(100 * item.progress)}%[/]"
            cells = (escape(clip(item.name, 24)), "import", "…", "…", state, ago(j.updated_at))
        else:
            cells = (escape(clip(item.name, 24)), "import", "-", "-", f"[red]✗ {j.status}[/]", ago(j.updated_at))
        rows.append((key, cells))
        items[key] = item
    for d in datasets:
        lint = json_dict(d.lint)
        verdict = str(lint.get("verdict") or "")
        key = str(d.id)
        items[key] = DatasetItem("dataset", d.id, d.name, verdict=verdict, summary=_first_problem(lint))
        rows.append((
            key,
            (escape(clip(d.name, 24)), d.format or "-", str(d.num_train), str(d.num_val), verdict_badge(verdict),
             ago(d.created_at)),
        ))  # fmt: skip
    return rows, items, imports


def run_cells(run: RunRow, now: float | None = None) -> tuple[str, ...]:
    """One Runs-tab row: id, kind, name, status, step, progress bar, latest loss, ETA, device."""
    kind = run.kind
    if kind == "train" and run.method:
        kind = "dpo" if run.objective == "dpo" else run.method
    if run.name:
        name = escape(clip(run.name, 10))
    elif run.dataset:
        name = f"[dim]{escape(clip(str(run.dataset), 10))}[/dim]"
    else:
        name = "-"
    eta = eta_text(remaining_eta(run.eta_s, run.eta_at, now)) if run.status == "running" else "-"
    style = PROGRESS_STYLE.get(run.status, "dim")
    return (
        str(run.id),
        kind,
        name,
        run.status,
        f"{run.step}/{run.total_steps}" if run.total_steps else str(run.step),
        f"[{style}]{progress_bar(run.progress, 5)}[/{style}]",
        fmt_value(run.loss),
        eta,
        run.slot,
    )


def artifact_rows(artifacts: list[Any], home: Path | None = None) -> list[tuple[str, tuple]]:
    """Artifacts as a lineage tree: each parent followed by what was made from it, indented. Names keep their end
    (a GGUF's quant suffix) and paths are relative to the home."""

    rows: list[tuple[str, tuple]] = []
    for a, depth in lineage_order(artifacts):
        kind = ("  " * (depth - 1) + "└ " if depth else "") + a.kind
        path = home_relative(a.path, home) if home is not None else a.path
        rows.append((str(a.id), (kind, middle_clip(a.name, 24) or "-", size_text(a.size), badge(json_dict(a.meta)),
                                 path)))  # fmt: skip
    return rows


def gguf_choices(artifacts: list[Any]) -> list[tuple[str, str]]:
    """The project's GGUF artifacts, newest first, as (label, artifact id) for a Select."""
    ggufs = sorted((a for a in artifacts if a.kind == "gguf"), key=lambda a: a.id, reverse=True)
    return [(f"{middle_clip(a.name, 40)} · {size_text(a.size)} · #{a.id}", str(a.id)) for a in ggufs]
