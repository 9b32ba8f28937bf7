"""One dataset: its lint report, its token lengths as a chart, and a paged preview of its records.

Everything comes from the dataset's snapshot folder (`report.json`, `flags.json`, `train.jsonl`,
`val.jsonl`), read in worker threads. The preview never loads a split into memory or widgets: a
split is read once into the byte offset and id of each line, and each page reads one line.
"""

from __future__ import annotations

import json
import re
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.markup import escape
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from store.db import Store
from store.errors import NotFound
from store.views import DatasetDetail, dataset_detail, dataset_users, json_dict
from tui.screens._common import ago
from tui.widgets.badges import verdict_badge
from tui.widgets.histogram import Bin, HistogramBars

TABS = [("report", "Report"), ("tokens", "Tokens"), ("preview", "Preview")]
SPLITS = ("train", "val")
FILTERS: list[tuple[str, str]] = [
    ("all", "all"),
    ("duplicates", "duplicates"),
    ("pii", "PII"),
    ("too_long", "too long"),
    ("masked_out", "masked-out"),
]
FILTER_LABELS = dict(FILTERS)
FLAG_KEYS = ("exact_duplicate", "near_duplicate", "pii", "too_long", "masked_out")
MAX_TURN_CHARS = 20_000  # of one turn's content on screen; the rest is counted, not drawn
STATUS_STYLE = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red")}
ROLE_STYLE = {
    "system": "bold magenta",
    "user": "bold cyan",
    "assistant": "bold green",
    "tool": "bold yellow",
    "chosen": "bold green",
    "rejected": "bold red",
    "text": "bold",
}
_ID_PREFIX = re.compile(rb'^\{"id":(-?\d+)[,}]')


# ----------------------------------------------------------------------------- reading (worker threads)


@dataclass
class DatasetData:
    """One read of a dataset: its row, report and flagged ids."""

    detail: DatasetDetail
    report: dict[str, Any] | None = None
    problem: str = ""  # why there is no report
    flags: dict[str, set[int]] = field(default_factory=dict)  # filter -> flagged ids
    flags_partial: bool = False  # derived from the report's (capped) id lists, not flags.json

    @property
    def folder(self) -> Path:
        return Path(self.detail.path)


def _read_json(path: Path) -> Any:
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)


def _ids(value: Any) -> set[int]:
    return {int(i) for i in value or () if isinstance(i, int | str) and str(i).lstrip("-").isdigit()}


def flags_from_file(data: dict[str, Any]) -> dict[str, set[int]]:
    """The preview's filters from `flags.json` ({kind: [ids]})."""
    return {
        "duplicates": _ids(data.get("exact_duplicate")) | _ids(data.get("near_duplicate")),
        "pii": _ids(data.get("pii")),
        "too_long": _ids(data.get("too_long")),
        "masked_out": _ids(data.get("masked_out")),
    }


def flags_from_report(report: dict[str, Any]) -> dict[str, set[int]]:
    """What the filters can know from a report alone (its id lists keep the first few of each kind)."""
    dup = report.get("duplicates") or {}
    duplicates: set[int] = set()
    for section in ("exact", "near"):
        for example in (dup.get(section) or {}).get("examples") or ():
            duplicates |= _ids(example.get("ids"))
    pii: set[int] = set()
    for value in (report.get("pii") or {}).values():
        if isinstance(value, dict):
            pii |= _ids(value.get("ids"))
    tokens = report.get("tokens") or {}
    issues = (report.get("structure") or {}).get("issues") or {}
    masked = _ids((issues.get("no_assistant_turn") or {}).get("ids"))
    return {"duplicates": duplicates, "pii": pii, "too_long": _ids(tokens.get("over_max_ids")), "masked_out": masked}


def load_dataset(store: Store, dataset_id: int) -> DatasetData:
    """The dataset's row, `report.json` and flags (from `flags.json`, else derived from the report)."""
    with store.raw() as conn:
        detail = dataset_detail(conn, dataset_id)
    data = DatasetData(detail)
    folder = data.folder
    if not detail.path or not folder.is_dir():
        data.problem = f"The snapshot folder {detail.path or '(none recorded)'} is missing."
        return data
    try:
        data.report = _read_json(folder / "report.json")
    except FileNotFoundError:
        data.problem = f"There is no report.json in {folder}."
    except (OSError, ValueError) as error:
        data.problem = f"Could not read {folder / 'report.json'}: {error}"
    try:
        data.flags = flags_from_file(_read_json(folder / "flags.json"))
    except (OSError, ValueError, AttributeError):
        data.flags = flags_from_report(data.report or {})
        data.flags_partial = True
    return data


@dataclass
class SplitIndex:
    """Where each record of a split's JSONL file starts, and its id."""

    split: str
    path: Path
    offsets: array = field(default_factory=lambda: array("q"))
    ids: array = field(default_factory=lambda: array("q"))
    missing: bool = False

    def __len__(self) -> int:
        return len(self.offsets)


def index_split(folder: Path, split: str) -> SplitIndex:
    """One pass over `<split>.jsonl`: the byte offset and id of every record (no record is kept)."""
    path = folder / f"{split}.jsonl"
    index = SplitIndex(split, path)
    if not path.is_file():
        index.missing = True
        return index
    position = 0
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                match = _ID_PREFIX.match(line)
                if match:
                    record_id = int(match.group(1))
                else:
                    try:
                        record_id = int(json.loads(line).get("id", len(index.ids)))
                    except (ValueError, AttributeError, TypeError):
                        record_id = -1
                index.offsets.append(position)
                index.ids.append(record_id)
            position += len(line)
    return index


def read_record(path: Path, offset: int) -> dict[str, Any]:
    """The record whose line starts at `offset`."""
    with path.open("rb") as fh:
        fh.seek(offset)
        line = fh.readline()
    try:
        value = json.loads(line)
    except ValueError as error:
        return {"_error": f"line at byte {offset} is not valid JSON: {error}"}
    return value if isinstance(value, dict) else {"_error": f"line at byte {offset} is not a JSON object"}


# ----------------------------------------------------------------------------- rendering


def _heading(title: str) -> Text:
    return Text(f"\n{title}", style="bold underline")


def _n(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def _id_list(ids: Sequence[Any], limit: int = 6) -> str:
    shown = ", ".join(f"#{i}" for i in list(ids)[:limit])
    return shown + (", …" if len(ids) > limit else "")


def _grid(*widths: int | None) -> Table:
    table = Table.grid(padding=(0, 1))
    for width in widths:
        if width is None:
            table.add_column(ratio=1, overflow="fold")
        else:
            table.add_column(width=width, no_wrap=True)
    return table


def checklist_table(checklist: Sequence[dict[str, Any]]) -> Table:
    """The checklist: a coloured mark, the check and its detail (wrapped in its column)."""
    table = _grid(6, 18, None)
    for item in checklist:
        status = str(item.get("status", ""))
        mark, colour = STATUS_STYLE.get(status, ("?", "dim"))
        table.add_row(Text(f"{mark} {status}", style=colour), Text(str(item.get("check", "")), style="bold"),
                      Text(str(item.get("detail", ""))))  # fmt: skip
    return table


def mask_text(label_mask: dict[str, Any]) -> Text:
    """The label-mask sample: trained tokens bold on green, masked ones dim; newlines shown as ↵."""
    out = Text()
    for run in label_mask.get("runs") or ():
        if not isinstance(run, list | tuple) or len(run) != 2:
            continue
        piece, trained = str(run[0]), bool(run[1])
        out.append(piece.replace("\n", "↵\n"), style="bold black on green" if trained else "dim")
    return out


def report_renderable(report: dict[str, Any]) -> RenderableType:
    """The Report tab: verdict and counts, checklist, structure, duplicates, PII, label mask, import."""
    parts: list[RenderableType] = []
    add = parts.append
    counts = report.get("counts") or {}
    verdict = str(report.get("verdict", ""))
    mark, colour = STATUS_STYLE.get(verdict, ("?", "dim"))
    head = Text()
    head.append(f" {mark} {verdict.upper() or '?'} ", style=f"bold reverse {colour}")
    head.append(f"  {report.get('format', '?')} ({report.get('kind', '?')})", style="bold")
    head.append(f"  train {_n(counts.get('train', 0))} · val {_n(counts.get('val', 0))}"
                f" · total {_n(counts.get('total', 0))}")  # fmt: skip
    dropped = {k: v for k, v in (counts.get("dropped") or {}).items() if v}
    if dropped:
        head.append(" · dropped " + ", ".join(f"{k.replace('_', ' ')} {_n(v)}" for k, v in dropped.items()))
    add(head)

    add(_heading("Checklist"))
    add(checklist_table(report.get("checklist") or ()))

    structure = report.get("structure") or {}
    add(_heading("Structure"))
    turns, chars = structure.get("turns"), structure.get("chars") or {}
    line = Text()
    if turns:
        line.append(f"turns per example: min {turns['min']} · mean {turns['mean']} · max {turns['max']}\n")
        line.append(f"with a system prompt: {_n(structure.get('with_system_prompt', 0))} · "
                    f"multi-turn: {_n(structure.get('multi_turn', 0))}\n")  # fmt: skip
    if chars:
        line.append(f"characters per example: min {_n(chars.get('min'))} · mean {_n(chars.get('mean'))} · "
                    f"max {_n(chars.get('max'))}")  # fmt: skip
    add(line)
    roles = structure.get("roles") or {}
    if roles:
        table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
        for name, justify in (("role", "left"), ("turns", "right"), ("share", "right"), ("chars", "right"),
                              ("share", "right"), ("mean chars", "right")):  # fmt: skip
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for role, r in roles.items():
            table.add_row(Text(role, style=ROLE_STYLE.get(role, "")), _n(r.get("turns", 0)),
                          f"{r.get('turn_share', 0):.1%}", _n(r.get("chars", 0)), f"{r.get('char_share', 0):.1%}",
                          _n(r.get("mean_chars", 0)))  # fmt: skip
        add(table)
    extras = []
    if structure.get("with_tools"):
        extras.append(f"with tools: {_n(structure['with_tools'])}")
    labels = structure.get("labels") or {}
    if labels:
        extras.append(f"desirable: {_n(labels.get('desirable', 0))} · undesirable: {_n(labels.get('undesirable', 0))}")
    if extras:
        add(Text(" · ".join(extras)))
    for name, value in (structure.get("issues") or {}).items():
        add(Text(f"! {name.replace('_', ' ')}: {_n(value.get('count', 0))} ({_id_list(value.get('ids') or ())})",
                 style="yellow"))  # fmt: skip
    unused = ((report.get("fields") or {}).get("unused")) or {}
    if unused:
        add(_heading("Fields not imported"))
        add(Text("\n".join(f"{name}: {_n(count)} record(s)" for name, count in unused.items()), style="yellow"))

    add(_heading("Duplicates"))
    dup = report.get("duplicates") or {}
    exact, near = dup.get("exact") or {}, dup.get("near") or {}
    text = Text(f"exact: {_n(exact.get('groups', 0))} group(s), {_n(exact.get('duplicates', 0))} duplicate(s)\n")
    for example in exact.get("examples") or ():
        a, b = (example.get("ids") or [None, None])[:2]
        text.append(f"  #{a} = #{b} (x{example.get('group_size', 2)}): ", style="bold")
        text.append(f"{example.get('text', '')}\n")
    text.append(f"near (≥ {near.get('threshold', '?')}): {_n(near.get('pairs', 0))} pair(s), "
                f"{_n(near.get('duplicates', 0))} duplicate(s) beyond exact")  # fmt: skip
    for example in near.get("examples") or ():
        a, b = (example.get("ids") or [None, None])[:2]
        text.append(f"\n  #{a} ~ #{b} ({example.get('similarity', 0):.2f})", style="bold")
        for snippet in example.get("texts") or ():
            text.append(f"\n    {snippet}", style="dim")
    overlap = dup.get("val_overlap") or {}
    if overlap.get("count"):
        text.append(f"\nvalidation examples repeating training ones: {_n(overlap['count'])} "
                    f"({_id_list(overlap.get('ids') or ())})", style="yellow")  # fmt: skip
    add(text)

    add(_heading("PII (samples are redacted)"))
    pii = {k: v for k, v in (report.get("pii") or {}).items() if isinstance(v, dict) and v.get("count")}
    if not pii:
        add(Text("none found: no e-mails, phone or card numbers, IPs or secrets"))
    else:
        table = _grid(12, None)
        for kind, value in pii.items():
            detail = Text(f"{_n(value['count'])} in {_n(value.get('examples', 0))} example(s) "
                          f"({_id_list(value.get('ids') or ())})")  # fmt: skip
            if value.get("samples"):
                detail.append("\ne.g. " + ", ".join(map(str, value["samples"])), style="dim")
            table.add_row(Text(kind.replace("_", " "), style="bold"), detail)
        add(table)

    add(_heading("Label mask"))
    mask = report.get("label_mask") or {}
    if "skipped" in mask or not mask:
        add(Text(f"skipped: {mask.get('skipped', 'not in the report')}", style="dim"))
    else:
        more = " (its first tokens)" if mask.get("truncated") else ""
        add(Text(f"example #{mask.get('sample_id')}: {_n(mask.get('trained', 0))} tokens trained, "
                 f"{_n(mask.get('masked', 0))} masked{more}"))  # fmt: skip
        legend = Text()
        legend.append("trained", style="bold black on green")
        legend.append(" = learned (assistant turns) · ")
        legend.append("masked", style="dim")
        legend.append(" = left out of the loss · ↵ = newline")
        add(legend)
        add(mask_text(mask))

    info = report.get("import") or {}
    if info:
        add(_heading("Import"))
        text = Text(f"source: {info.get('source', '?')}\n")
        text.append(f"records read: {_n(info.get('records_read', 0))} · invalid: {_n(info.get('invalid', 0))} · "
                    f"val fraction {info.get('val_fraction')} · seed {info.get('seed')}")  # fmt: skip
        errors = info.get("errors") or ()
        for error in errors[:10]:
            where = f"{error.get('file', '?')}:{error.get('line', '?')}"
            field_name = f" {error['field']}:" if error.get("field") else ""
            text.append(f"\n  {where}:{field_name} {error.get('message', '')}", style="yellow")
        if len(errors) > 10:
            text.append(f"\n  … and {len(errors) - 10} more", style="yellow")
        add(text)
    return Group(*parts)


def histogram_bins(tokens: dict[str, Any]) -> list[Bin]:
    """The report's token-length histogram as bars."""
    bins = []
    for h in tokens.get("histogram") or ():
        try:
            bins.append(Bin(int(h["lo"]), int(h["hi"]), int(h["count"])))
        except (KeyError, TypeError, ValueError):
            continue
    return bins


def tokens_summary(tokens: dict[str, Any], total: int) -> Text:
    """The Tokens tab's numbers: tokenizer, min/median/p95/max, and how many exceed max_length."""
    text = Text()
    text.append("tokenizer ", style="dim")
    text.append(f"{tokens.get('tokenizer', '?')}\n")
    for label, key in (("min", "min"), ("median", "median"), ("p95", "p95"), ("max", "max"), ("mean", "mean")):
        text.append(f"{label} ", style="dim")
        text.append(f"{_n(tokens.get(key, 0))}", style="bold")
        text.append(" · ")
    text.append("total ", style="dim")
    text.append(f"{_n(tokens.get('total', 0))} tokens\n", style="bold")
    over, limit = int(tokens.get("over_max") or 0), tokens.get("max_length")
    if over:
        share = f" ({over / total:.1%})" if total else ""
        text.append(f"{_n(over)} example(s){share} exceed max_length {_n(limit)} and will be truncated",
                    style="bold red")  # fmt: skip
        text.append(" · the Preview tab's too-long filter shows them", style="dim")
    else:
        text.append(f"every example fits max_length {_n(limit)}", style="green")
    return text


def tokens_notes(tokens: dict[str, Any]) -> Text:
    """Warnings about the chat template and special tokens, if any."""
    text = Text()
    if tokens.get("note"):
        text.append(f"! {tokens['note']}\n", style="yellow")
    errors = tokens.get("template_errors") or {}
    if errors.get("count"):
        ids = _id_list(errors.get("ids") or ())
        text.append(f"! the chat template rejects {_n(errors['count'])} example(s) ({ids}): "
                    f"{tokens.get('template_error', '')}\n", style="yellow")  # fmt: skip
    control = tokens.get("control_tokens_in_content") or {}
    if control.get("count"):
        text.append(f"! {_n(control['count'])} example(s) contain special tokens in message text "
                    f"({_id_list(control.get('ids') or ())})\n", style="yellow")  # fmt: skip
    return text


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        text = content
    elif content is None:
        text = ""
    else:
        text = json.dumps(content, ensure_ascii=False, indent=1)
    if len(text) > MAX_TURN_CHARS:
        text = text[:MAX_TURN_CHARS] + f"\n… {len(text) - MAX_TURN_CHARS:,} more characters"
    return text


def record_turns(record: dict[str, Any]) -> list[tuple[str, str, str]]:
    """A normalized record as (label, style key, content) turns: chat messages, preference pairs or text."""
    if "_error" in record:
        return [("error", "rejected", str(record["_error"]))]

    def messages(value: Any, prefix: str = "", style: str | None = None) -> list[tuple[str, str, str]]:
        out = []
        for message in value if isinstance(value, list) else ():
            if not isinstance(message, dict):
                continue
            role = str(message.get("role", "?"))
            body = _content_text(message.get("content"))
            for call in message.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict):
                    args = json.dumps(fn.get("arguments"), ensure_ascii=False)
                    body += f"{chr(10) if body else ''}→ calls {fn.get('name')}({args})"
            out.append((f"{prefix}{role}", style or role, body))
        return out

    if "messages" in record:
        turns = []
        if record.get("tools"):
            names = [str((t.get("function") or t).get("name")) for t in record["tools"] if isinstance(t, dict)]
            turns.append(("tools", "tool", ", ".join(names)))
        return turns + messages(record["messages"])
    if "segments" in record:
        return [("trained" if seg.get("label") else "context", "chosen" if seg.get("label") else "text",
                 _content_text(seg.get("text"))) for seg in record["segments"] if isinstance(seg, dict)]
    if "completion" in record:
        label = "desirable" if record.get("label") else "undesirable"
        return messages(record.get("prompt"), "prompt · ") + messages(
            record.get("completion"), f"{label} · ", "chosen" if record.get("label") else "rejected")
    if "chosen" in record or "rejected" in record:
        turns = messages(record.get("prompt"), "prompt · ")
        turns += messages(record.get("chosen"), "chosen · ", "chosen")
        turns += messages(record.get("rejected"), "rejected · ", "rejected")
        return turns
    if "text" in record:
        return [("text", "text", _content_text(record["text"]))]
    rest = {k: v for k, v in record.items() if k != "id"}
    return [("record", "text", _content_text(rest))]


def turn_widget(label: str, style_key: str, content: str) -> Static:
    """One turn: its role label over its content, with a coloured bar on the left by role."""
    text = Text()
    text.append(label, style=ROLE_STYLE.get(style_key, "bold"))
    text.append("\n")
    text.append(content if content.strip() else "(empty)", style="" if content.strip() else "dim italic")
    role_class = style_key if style_key in ROLE_STYLE else "other"
    return Static(text, classes=f"turn role-{role_class}")


# ----------------------------------------------------------------------------- deleting


def read_dataset_users(store: Store, dataset_id: int) -> list[tuple[int, str, str]]:
    """(id, kind, status) of the jobs that use the dataset (NotFound when it is gone)."""
    with store.raw() as conn:
        dataset_detail(conn, dataset_id)
        return dataset_users(conn, dataset_id)


def delete_dataset_item(store: Store, project: str, item: Any, force: bool) -> str:
    """Delete a Datasets-tab row (a dataset, or a failed import by its name) as `tunedeck dataset delete` does;
    returns what was deleted, in words. Runs in a worker thread."""
    from engine.cleanup import delete_dataset  # SQLAlchemy loads on the first write, in this worker

    ref = str(item.id) if item.kind == "dataset" else item.name
    return str(delete_dataset(store, ref, project, force=force)).capitalize()


class ConfirmDatasetDelete(ModalScreen[str | None]):
    """Asks before deleting a dataset or a failed import. Result: "delete", "force" (used by ended jobs) or None.

    A dataset a queued or running job uses cannot be deleted from here; one that ended jobs used only with `f`,
    which says they can no longer be resumed or retried.
    """

    HELP_TITLE = "Delete dataset"
    BINDINGS = [
        Binding("y", "delete", "Delete", id="confirm_dataset_delete.delete"),
        Binding("f", "force", "Delete though used", id="confirm_dataset_delete.force"),
        Binding("n,escape", "keep", "Keep", id="confirm_dataset_delete.keep"),
    ]

    def __init__(self, name: str, failed_import: bool, users: list[tuple[int, str, str]]) -> None:
        super().__init__()
        self.dataset_name = name
        self.failed_import = failed_import
        self.active = [u for u in users if u[2] in ("queued", "running")]
        self.users = users

    def compose(self) -> ComposeResult:
        name = escape(self.dataset_name)
        if self.failed_import:
            body, hint = f"Delete the failed import of [b]{name}[/b] and its log?", "y delete · n or esc keep"
        elif self.active:
            i, kind, status = self.active[0]
            body = f"Dataset [b]{name}[/b] is used by {'run' if kind == 'train' else kind} {i}, which is {status}.\n" \
                   "Cancel it before deleting the dataset."  # fmt: skip
            hint = "n or esc close"
        elif self.users:
            jobs = ", ".join(str(i) for i, _, _ in self.users[:6])
            body = (f"Dataset [b]{name}[/b] was used by job(s) {jobs}.\nThey keep their records but cannot be resumed "
                    "or retried without it. This cannot be undone.")
            hint = "f delete anyway · n or esc keep"
        else:
            body, hint = f"Delete dataset [b]{name}[/b] and its snapshot?\nThis cannot be undone.", \
                "y delete · n or esc keep"  # fmt: skip
        with Vertical(id="confirm-dataset-delete", classes="dialog"):
            yield Static("Delete dataset", classes="dialog-title")
            yield Static(body, id="confirm-body")
            yield Static("", id="confirm-note", classes="error")
            yield Static(hint, classes="hint")

    def on_mount(self) -> None:
        self.query_one("#confirm-note").display = False

    def _note(self, message: str) -> None:
        note = self.query_one("#confirm-note", Static)
        note.update(escape(message))
        note.display = True

    def action_delete(self) -> None:
        if self.active:
            self._note("Nothing deleted: cancel the job that uses it first.")
        elif self.users and not self.failed_import:
            self._note("Jobs used it: press f to delete it anyway, n to keep it.")
        else:
            self.dismiss("delete")

    def action_force(self) -> None:
        if self.active:
            self._note("Nothing deleted: cancel the job that uses it first.")
        else:
            self.dismiss("force")

    def action_keep(self) -> None:
        self.dismiss(None)


# ----------------------------------------------------------------------------- the screen


class PreviewBody(VerticalScroll):
    """The preview's scrollable record; page up/down turn the page (↑/↓ scroll within a record)."""

    BINDINGS = [
        Binding("pageup", "screen.prev_record", "Previous record", show=False, id="preview_body.prev_record"),
        Binding("pagedown", "screen.next_record", "Next record", show=False, id="preview_body.next_record"),
    ]


class DatasetScreen(Screen[None]):
    """A dataset's report, token-length chart and record preview; esc goes back."""

    HELP_TITLE = "Dataset"
    AUTO_FOCUS = ""
    BINDINGS = [
        Binding("escape,backspace", "back", "Back", id="dataset.back"),
        Binding("1", "show_tab('report')", "Report tab", show=False, id="dataset.show_tab_report"),
        Binding("2", "show_tab('tokens')", "Tokens tab", show=False, id="dataset.show_tab_tokens"),
        Binding("3", "show_tab('preview')", "Preview tab", show=False, id="dataset.show_tab_preview"),
        Binding("right_square_bracket,pagedown", "next_record", "Next record", id="dataset.next_record"),
        # "\\[" shows as "[" in the help and the palette, whose key column is markup (a bare "[" breaks it).
        Binding("left_square_bracket", "prev_record", "Previous record", show=False, id="dataset.prev_record"),
        Binding("pageup", "prev_record", "Previous record", show=False, id="dataset.prev_record_pageup"),
        Binding("g", "first_record", "First record", show=False, id="dataset.first_record"),
        Binding("G", "last_record", "Last record", show=False, id="dataset.last_record"),
        Binding("f", "next_filter", "Filter", id="dataset.next_filter"),
        Binding("F", "prev_filter", "Previous filter", show=False, id="dataset.prev_filter"),
        Binding("t", "toggle_split", "Train/val", id="dataset.toggle_split"),
    ]

    def __init__(self, dataset_id: int) -> None:
        super().__init__()
        self.dataset_id = dataset_id
        self.data: DatasetData | None = None
        self.split = "train"
        self.filter = "all"
        self.position = 0  # in the filtered list of the current split
        self.record: dict[str, Any] | None = None  # the record on screen
        self._indexes: dict[str, SplitIndex] = {}
        self._indexing: set[str] = set()
        self._positions: dict[tuple[str, str], Sequence[int]] = {}  # (split, filter) -> positions, once read
        self._page = 0  # counts page requests, so that a slow read never shows an older page

    @property
    def store(self) -> Store:
        return self.app.store  # type: ignore[attr-defined]

    def compose(self) -> ComposeResult:
        yield Static(f"[b]tunedeck[/b] · dataset {self.dataset_id}", id="topbar")
        yield Static("Loading…", id="dataset-summary")
        with TabbedContent(id="dataset-tabs", initial="report"):
            with TabPane("1 Report", id="report"):
                with VerticalScroll(id="report-body", classes="tab-body"):
                    yield Static("Loading…", id="report-text")
            with TabPane("2 Tokens", id="tokens"):
                with VerticalScroll(id="tokens-body", classes="tab-body"):
                    yield Static("Loading…", id="tokens-text")
                    yield HistogramBars(id="histogram")
                    yield Static("", id="tokens-notes")
            with TabPane("3 Preview", id="preview"):
                yield Static("", id="preview-bar")
                with PreviewBody(id="preview-body", classes="tab-body"):
                    yield Static("Loading…", classes="preview-note")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#histogram").display = False
        self.query_one("#report-body").focus()
        self.run_worker(partial(load_dataset, self.store, self.dataset_id), group="load", thread=True,
                        exit_on_error=False)  # fmt: skip

    # -- tabs --------------------------------------------------------------------

    @property
    def active_tab(self) -> str:
        return self.query_one("#dataset-tabs", TabbedContent).active

    def action_show_tab(self, tab_id: str) -> None:
        self.query_one("#dataset-tabs", TabbedContent).active = tab_id

    @on(TabbedContent.TabActivated, "#dataset-tabs")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id or ""
        if tab == "preview":
            self._ensure_index()
            self._show_preview()
        # Focus goes to the tab's scrollable body, unless the tab bar has it (←/→ keep switching).
        if not (self.focused is not None and self.focused is self.query_one("#dataset-tabs").query_one("Tabs")):
            self.query_one(f"#{tab}-body").focus()

    def action_back(self) -> None:
        self.dismiss()

    # -- loading -----------------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if event.state == WorkerState.SUCCESS:
            if worker.group == "load":
                self.data = worker.result
                self._show_data()
            elif worker.group == "index":
                index: SplitIndex = worker.result
                self._indexing.discard(index.split)
                self._indexes[index.split] = index
                self._show_preview()
            elif worker.group == "record":
                page, record = worker.result
                if page == self._page:
                    self.record = record
                    self.run_worker(self._render_record(record), group="render", exclusive=True)
        elif event.state == WorkerState.ERROR:
            error = worker.error
            if worker.group == "load" and isinstance(error, NotFound):
                self.notify(f"Dataset {self.dataset_id} no longer exists.", severity="warning")
                self.dismiss()
            elif worker.group == "load":
                self.query_one("#dataset-summary", Static).update(escape(f"Could not read the dataset: {error}"))
            elif worker.group == "index":
                self._indexing.clear()
                self._preview_note(f"Could not read the records: {error}")
            else:
                self._preview_note(f"Could not read the record: {error}")

    def _show_data(self) -> None:
        data = self.data
        if data is None:
            return
        d = data.detail
        self.query_one("#topbar", Static).update(
            f"[b]tunedeck[/b] · project [b]{escape(d.project)}[/b] · dataset [b]{escape(d.name)}[/b]"
        )
        verdict = (data.report or {}).get("verdict") or _lint_verdict(d.lint)
        self.query_one("#dataset-summary", Static).update(
            f"{verdict_badge(verdict)} · {escape(d.format or '?')} · {d.num_train:,} train / {d.num_val:,} val · "
            f"id {d.id} · added {ago(d.created_at)}"
        )
        report_text = self.query_one("#report-text", Static)
        tokens_text = self.query_one("#tokens-text", Static)
        histogram = self.query_one("#histogram", HistogramBars)
        if data.report is None:
            report_text.update(escape(data.problem))
            tokens_text.update(escape(data.problem))
        else:
            report_text.update(report_renderable(data.report))
            tokens = data.report.get("tokens") or {}
            if "skipped" in tokens or not tokens:
                tokens_text.update(
                    f"Token lengths were not measured ({escape(str(tokens.get('skipped', 'not in the report')))}).\n"
                    "Import with a tokenizer (the import dialog's Tokenizer field, or --tokenizer) to see them."
                )
            else:
                total = int((data.report.get("counts") or {}).get("total") or 0)
                tokens_text.update(tokens_summary(tokens, total))
                histogram.set_data(histogram_bins(tokens), tokens.get("max_length"))
                histogram.display = True
                self.query_one("#tokens-notes", Static).update(tokens_notes(tokens))
        if self.active_tab == "preview":
            self._ensure_index()
        self._show_preview()

    def _ensure_index(self) -> None:
        if self.data is None or not self.data.detail.path:
            return
        split = self.split
        if split in self._indexes or split in self._indexing:
            return
        self._indexing.add(split)
        self.run_worker(partial(index_split, self.data.folder, split), group="index", thread=True,
                        exit_on_error=False)  # fmt: skip

    # -- preview -----------------------------------------------------------------

    @property
    def index(self) -> SplitIndex | None:
        return self._indexes.get(self.split)

    def positions(self, split: str | None = None, kind: str | None = None) -> Sequence[int]:
        """Positions in the split's file of the records the filter lets through."""
        split, kind = split or self.split, kind or self.filter
        index = self._indexes.get(split)
        if index is None:
            return []
        if kind == "all" or self.data is None:
            return range(len(index))
        cached = self._positions.get((split, kind))
        if cached is None:
            flagged = self.data.flags.get(kind, set())
            cached = [i for i, record_id in enumerate(index.ids) if record_id in flagged] if flagged else []
            self._positions[split, kind] = cached
        return cached

    @property
    def current_ids(self) -> list[int]:
        """The ids of the records the current split and filter show, in order."""
        index = self.index
        return [index.ids[i] for i in self.positions()] if index is not None else []

    def _bar_text(self, shown: Sequence[int]) -> str:
        data = self.data
        index = self.index
        splits = []
        for split in SPLITS:
            count = len(self._indexes[split]) if split in self._indexes else None
            if count is None and data is not None:
                count = data.detail.num_train if split == "train" else data.detail.num_val
            label = f"{split} {count:,}" if count is not None else split
            splits.append(f"[reverse b]▸{label} [/]" if split == self.split else f" {label} ")
        if index is None:
            where = "reading…"
        elif not shown:
            where = "no records"
        else:
            where = f"record [b]{self.position + 1:,}[/b] of {len(shown):,} · id {index.ids[shown[self.position]]}"
        filters = []
        for kind, label in FILTERS:
            if kind == "all" or index is None:
                text = label
            else:
                text = f"{label} {len(self.positions(kind=kind)):,}"
            filters.append(f"[reverse b]▸{text} [/]" if kind == self.filter else f" {text} ")
        partial_note = ""
        if data is not None and data.flags_partial and self.filter != "all":
            partial_note = " [dim](first ids from the report only)[/dim]"
        return f"{' '.join(splits)}│ {where}{partial_note}\n{' '.join(filters)}"

    def _show_preview(self) -> None:
        """The bar and, when the page changed, the record (read in a worker)."""
        shown = self.positions()
        if shown:
            self.position = min(max(self.position, 0), len(shown) - 1)
        else:
            self.position = 0
        self.query_one("#preview-bar", Static).update(self._bar_text(shown))
        index = self.index
        if self.data is None:
            return
        if index is None:
            if self.data.problem and not self.data.detail.path:
                self._preview_note(self.data.problem)
            else:
                self._preview_note(f"Reading {self.split}.jsonl…")
            return
        if index.missing:
            self._preview_note(f"There is no {self.split}.jsonl in {index.path.parent}.")
            return
        if not shown:
            if not len(index):
                self._preview_note(f"The {self.split} split is empty.")
            else:
                label = FILTER_LABELS[self.filter]
                note = f"No {label} records in the {self.split} split."
                if self.data.flags_partial:
                    note += " (Without flags.json the filters know only the first ids the report lists.)"
                self._preview_note(note + " Press f for the next filter, t for the other split.")
            return
        self._page += 1
        offset = index.offsets[shown[self.position]]
        self.run_worker(partial(self._read, self._page, index.path, offset), group="record", thread=True,
                        exclusive=True, exit_on_error=False)  # fmt: skip

    @staticmethod
    def _read(page: int, path: Path, offset: int) -> tuple[int, dict[str, Any]]:
        return page, read_record(path, offset)

    def _preview_note(self, message: str) -> None:
        self.record = None
        self._page += 1
        self.run_worker(self._render_note(message), group="render", exclusive=True)

    async def _render_note(self, message: str) -> None:
        body = self.query_one("#preview-body", PreviewBody)
        await body.remove_children()
        await body.mount(Static(escape(message), classes="preview-note"))

    async def _render_record(self, record: dict[str, Any]) -> None:
        body = self.query_one("#preview-body", PreviewBody)
        await body.remove_children()
        turns = record_turns(record)
        widgets = [turn_widget(*turn) for turn in turns] or [Static("(no turns)", classes="preview-note")]
        await body.mount_all(widgets)
        body.scroll_home(animate=False)

    def _move(self, position: int) -> None:
        if self.active_tab != "preview":
            self.action_show_tab("preview")
            return
        shown = self.positions()
        if not shown:
            return
        position = min(max(position, 0), len(shown) - 1)
        if position != self.position:
            self.position = position
            self._show_preview()

    def action_next_record(self) -> None:
        self._move(self.position + 1)

    def action_prev_record(self) -> None:
        self._move(self.position - 1)

    def action_first_record(self) -> None:
        self._move(0)

    def action_last_record(self) -> None:
        self._move(len(self.positions()) - 1)

    def _set_filter(self, step: int) -> None:
        kinds = [kind for kind, _ in FILTERS]
        self.filter = kinds[(kinds.index(self.filter) + step) % len(kinds)]
        self.position = 0
        if self.active_tab != "preview":
            self.action_show_tab("preview")  # its activation shows the page
        else:
            self._show_preview()

    def action_next_filter(self) -> None:
        self._set_filter(1)

    def action_prev_filter(self) -> None:
        self._set_filter(-1)

    def action_toggle_split(self) -> None:
        self.split = "val" if self.split == "train" else "train"
        self.position = 0
        if self.active_tab != "preview":
            self.action_show_tab("preview")
        else:
            self._ensure_index()
            self._show_preview()


def _lint_verdict(lint: Any) -> str:
    return str(json_dict(lint).get("verdict") or "")
