"""A dataset's lint report (the JSON :func:`engine.datasets.lint.build_report` writes) rendered for people.

The one renderer both faces use: ``tunedeck dataset show`` prints :func:`report_renderable` (in colour on a
terminal, :func:`format_report`'s plain 80-column text otherwise) and the TUI's dataset screen shows the same
renderable in its Report tab, and :func:`tokens_summary` / :func:`tokens_notes` beside its token-length chart.
Every string taken from the report is shown with its control characters replaced (a record cannot drive the
terminal), and the renderer tolerates reports with sections missing (older or partial reports).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

WIDTH = 80  # of the plain text `tunedeck dataset show` prints when not on a terminal
HISTOGRAM_BAR = 36
IMPORT_ERRORS_SHOWN = 10
STATUS_STYLE = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "fail": ("✗", "red")}


def _safe(value: Any) -> Any:
    """``value`` with every string's control characters (newlines excepted) shown as U+FFFD."""
    if isinstance(value, str):
        if value.isprintable():
            return value
        return "".join(ch if ch.isprintable() or ch in " \n" else "\ufffd" for ch in value)
    if isinstance(value, dict):
        return {_safe(k): _safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_safe(v) for v in value]
    return value


def _n(value: Any) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def _plural(count: Any, word: str) -> str:
    return f"{_n(count)} {word}{'' if count == 1 else 's'}"


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


def _section(title: str, *body: RenderableType) -> list[RenderableType]:
    """A blank line, the title, and the body indented by two columns (wrapped lines stay indented)."""
    return [Text(""), Text(title, style="bold underline"), Padding(Group(*body), (0, 0, 0, 2))]


def checklist_table(checklist: Sequence[dict[str, Any]]) -> Table:
    """The checklist: a coloured mark and status, the check and its detail (wrapped in its column)."""
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


def tokens_summary(tokens: dict[str, Any], total: int) -> Text:
    """Token lengths in numbers: tokenizer, min/median/p95/max/mean/total, and how many exceed max_length."""
    text = Text()
    text.append("tokenizer ", style="dim")
    text.append(f"{tokens.get('tokenizer', '?')}\n")
    for label in ("min", "median", "p95", "max", "mean"):
        text.append(f"{label} ", style="dim")
        text.append(_n(tokens.get(label, 0)), style="bold")
        text.append(" · ")
    text.append("total ", style="dim")
    text.append(f"{_n(tokens.get('total', 0))} tokens\n", style="bold")
    if tokens.get("sampled"):
        text.append(f"(min, median, p95, mean, total and histogram from {_n(tokens['sampled'])} evenly spaced "
                    f"examples; max and truncation from all {_n(tokens.get('measured', 0))} that could be long)\n",
                    style="dim")  # fmt: skip
    over, limit = int(tokens.get("over_max") or 0), tokens.get("max_length")
    if over:
        share = f" ({over / total:.1%})" if total else ""
        text.append(f"{_plural(over, 'example')}{share} exceed max_length {_n(limit)} and will be truncated "
                    f"({_id_list(tokens.get('over_max_ids') or ())})", style="bold red")  # fmt: skip
    else:
        text.append(f"every example fits max_length {_n(limit)}", style="green")
    return text


def tokens_notes(tokens: dict[str, Any]) -> Text:
    """Warnings about the tokenizer, the chat template and special tokens in message text, if any."""
    text = Text()
    if tokens.get("note"):
        text.append(f"! {tokens['note']}\n", style="yellow")
    errors = tokens.get("template_errors") or {}
    if errors.get("count"):
        text.append(f"! the chat template rejects {_plural(errors['count'], 'example')} "
                    f"({_id_list(errors.get('ids') or ())}): {tokens.get('template_error', '')}\n",
                    style="yellow")  # fmt: skip
    control = tokens.get("control_tokens_in_content") or {}
    if control.get("count"):
        text.append(f"! {_plural(control['count'], 'example')} contain special tokens in message text, which "
                    f"encode as control tokens ({_id_list(control.get('ids') or ())})\n", style="yellow")  # fmt: skip
    text.rstrip()
    return text


def histogram_text(histogram: Sequence[dict[str, Any]], max_length: Any, bar: int = HISTOGRAM_BAR) -> Text:
    """The token-length histogram as text bars, the bin holding max_length marked."""
    bins = [h for h in histogram if isinstance(h, dict) and {"lo", "hi", "count"} <= h.keys()]
    text = Text()
    if not bins:
        return text
    top = max(int(h["count"]) for h in bins) or 1
    lo_w = max(len(_n(h["lo"])) for h in bins)
    hi_w = max(len(_n(h["hi"])) for h in bins)
    for i, h in enumerate(bins):
        count = int(h["count"])
        n = max(round(count / top * bar), 1 if count else 0)
        text.append(f"{_n(h['lo']):>{lo_w}}-{_n(h['hi']):<{hi_w}} |", style="dim")
        text.append(f"{'#' * n:<{bar}}", style="cyan")
        text.append(f" {_n(count)}")
        if isinstance(max_length, int) and h["lo"] <= max_length < h["hi"]:
            text.append("  <- max_length", style="bold")
        if i < len(bins) - 1:
            text.append("\n")
    return text


def _head(report: dict[str, Any], styled: bool) -> list[RenderableType]:
    counts = report.get("counts") or {}
    verdict = str(report.get("verdict", ""))
    mark, colour = STATUS_STYLE.get(verdict, ("?", "dim"))
    head = Text()
    if styled:
        head.append(f" {mark} {verdict.upper() or '?'} ", style=f"bold reverse {colour}")
        head.append("  ")
    head.append(f"Dataset lint: {report.get('format', '?')} ({report.get('kind', '?')})", style="bold")
    if not styled:
        head.append(f"  verdict: {mark} {verdict.upper() or '?'}")
    line = Text(f"train {_n(counts.get('train', 0))} · val {_n(counts.get('val', 0))} · "
                f"total {_n(counts.get('total', 0))}")  # fmt: skip
    dropped = {k: v for k, v in (counts.get("dropped") or {}).items() if v}
    if dropped:
        line.append(f" · dropped {_n(sum(dropped.values()))} (" +
                    ", ".join(f"{k.replace('_', ' ')} {_n(v)}" for k, v in dropped.items()) + ")")  # fmt: skip
    return [head, Padding(line, (0, 0, 0, 2))]


def _structure(structure: dict[str, Any]) -> list[RenderableType]:
    out: list[RenderableType] = []
    turns, chars = structure.get("turns"), structure.get("chars") or {}
    line = Text()
    if turns:
        line.append(f"turns per example: min {turns['min']} · mean {turns['mean']} · max {turns['max']}\n")
        line.append(f"with a system prompt: {_n(structure.get('with_system_prompt', 0))} · "
                    f"multi-turn: {_n(structure.get('multi_turn', 0))}\n")  # fmt: skip
    if chars:
        line.append(f"characters per example: min {_n(chars.get('min'))} · mean {_n(chars.get('mean'))} · "
                    f"max {_n(chars.get('max'))}")  # fmt: skip
    line.rstrip()
    out.append(line)
    roles = structure.get("roles") or {}
    if roles:
        table = Table(box=None, padding=(0, 1), pad_edge=False, show_edge=False, header_style="bold")
        for name, justify in (("role", "left"), ("turns", "right"), ("share", "right"), ("chars", "right"),
                              ("share", "right"), ("mean chars", "right")):  # fmt: skip
            table.add_column(name, justify=justify)  # type: ignore[arg-type]
        for role, r in roles.items():
            table.add_row(Text(role, style="bold"), _n(r.get("turns", 0)),
                          f"{r.get('turn_share', 0):.1%}", _n(r.get("chars", 0)), f"{r.get('char_share', 0):.1%}",
                          _n(r.get("mean_chars", 0)))  # fmt: skip
        out.append(table)
    extras = []
    if structure.get("with_tools"):
        extras.append(f"with tools: {_n(structure['with_tools'])}")
    labels = structure.get("labels") or {}
    if labels:
        extras.append(f"desirable: {_n(labels.get('desirable', 0))} · undesirable: {_n(labels.get('undesirable', 0))}")
    if extras:
        out.append(Text(" · ".join(extras)))
    for name, value in (structure.get("issues") or {}).items():
        out.append(Text(f"! {name.replace('_', ' ')}: {_n(value.get('count', 0))} "
                        f"({_id_list(value.get('ids') or ())})", style="yellow"))  # fmt: skip
    return out


def _indented(text: Text, columns: int) -> Padding:
    return Padding(text, (0, 0, 0, columns))


def _duplicates(dup: dict[str, Any]) -> list[RenderableType]:
    exact, near = dup.get("exact") or {}, dup.get("near") or {}
    out: list[RenderableType] = [Text(f"exact: {_plural(exact.get('groups', 0), 'group')}, "
                                      f"{_plural(exact.get('duplicates', 0), 'duplicate')}")]  # fmt: skip
    for example in exact.get("examples") or ():
        a, b = (example.get("ids") or [None, None])[:2]
        line = Text(f"#{a} = #{b} (x{example.get('group_size', 2)}): ", style="bold")
        line.append(str(example.get("text", "")), style="not bold")
        out.append(_indented(line, 2))
    out.append(Text(f"near (≥ {near.get('threshold', '?')}): {_plural(near.get('pairs', 0), 'pair')}, "
                    f"{_plural(near.get('duplicates', 0), 'duplicate')} beyond exact"))  # fmt: skip
    for example in near.get("examples") or ():
        a, b = (example.get("ids") or [None, None])[:2]
        out.append(_indented(Text(f"#{a} ~ #{b} ({example.get('similarity', 0):.2f})", style="bold"), 2))
        out += [_indented(Text(str(snippet), style="dim"), 4) for snippet in example.get("texts") or ()]
    overlap = dup.get("val_overlap") or {}
    if overlap.get("count"):
        out.append(Text(f"validation examples repeating training ones: {_n(overlap['count'])} "
                        f"({_id_list(overlap.get('ids') or ())})", style="yellow"))  # fmt: skip
    return out


def _pii(pii: dict[str, Any]) -> RenderableType:
    found = {k: v for k, v in pii.items() if isinstance(v, dict) and v.get("count")}
    if not found:
        return Text("none found: no e-mails, phone or card numbers, IPs or secrets")
    table = _grid(12, None)
    for kind, value in found.items():  # in the report's order (engine.datasets.pii.KINDS)
        detail = Text(f"{_n(value['count'])} in {_plural(value.get('examples', 0), 'example')} "
                      f"({_id_list(value.get('ids') or ())})")  # fmt: skip
        if value.get("samples"):
            detail.append("\ne.g. " + ", ".join(map(str, value["samples"])), style="dim")
        table.add_row(Text(kind.replace("_", " "), style="bold"), detail)
    return table


def _label_mask(mask: dict[str, Any], styled: bool) -> list[RenderableType]:
    if "skipped" in mask or not mask:
        return [Text(f"skipped: {mask.get('skipped', 'not in the report')}", style="dim")]
    more = " (its first tokens)" if mask.get("truncated") else ""
    out: list[RenderableType] = [Text(f"example #{mask.get('sample_id')}: {_n(mask.get('trained', 0))} tokens "
                                      f"trained, {_n(mask.get('masked', 0))} masked{more}")]  # fmt: skip
    if styled:
        legend = Text()
        legend.append("trained", style="bold black on green")
        legend.append(" = learned (assistant turns) · ")
        legend.append("masked", style="dim")
        legend.append(" = left out of the loss · ↵ = newline")
        out += [legend, mask_text(mask)]
    else:  # no colours: the report's own rendering, masked tokens in brackets
        out += [Text("plain = learned (assistant turns) · [bracketed] = left out of the loss · ↵ = newline"),
                Text(str(mask.get("rendered", "")))]
    return out


def _import(info: dict[str, Any]) -> list[RenderableType]:
    out: list[RenderableType] = [
        Text(f"source: {info.get('source', '?')}"),
        Text(f"records read: {_n(info.get('records_read', 0))} · invalid: {_n(info.get('invalid', 0))} · "
             f"val fraction {info.get('val_fraction')} · seed {info.get('seed')}"),
    ]  # fmt: skip
    errors = info.get("errors") or ()
    for error in errors[:IMPORT_ERRORS_SHOWN]:
        where = f"{error.get('file', '?')}:{error.get('line', '?')}"
        field_name = f" {error['field']}:" if error.get("field") else ""
        out.append(_indented(Text(f"{where}:{field_name} {error.get('message', '')}", style="yellow"), 2))
    if len(errors) > IMPORT_ERRORS_SHOWN:
        out.append(_indented(Text(f"… and {len(errors) - IMPORT_ERRORS_SHOWN} more", style="yellow"), 2))
    return out


def report_renderable(report: dict[str, Any], *, tokens: bool = True, styled: bool = True) -> RenderableType:
    """The whole report: verdict and counts, checklist, structure, unused fields, duplicates, PII, token
    lengths (unless ``tokens`` is false: the TUI shows them in a tab of their own), label mask and import.

    ``styled`` false renders for plain text: the verdict spelt out and the label mask's masked tokens in
    brackets instead of colours.
    """
    report = _safe(report)
    parts: list[RenderableType] = _head(report, styled)
    parts += _section("Checklist", checklist_table(report.get("checklist") or ()))
    parts += _section("Structure", *_structure(report.get("structure") or {}))
    unused = (report.get("fields") or {}).get("unused") or {}
    if unused:
        parts += _section("Fields not imported (field: records holding it)",
                          Text("\n".join(f"{name}: {_n(count)}" for name, count in unused.items()), style="yellow"))
    parts += _section("Duplicates", *_duplicates(report.get("duplicates") or {}))
    parts += _section("PII (samples are redacted)", _pii(report.get("pii") or {}))
    if tokens:
        tok = report.get("tokens") or {}
        if "skipped" in tok or not tok:
            parts += _section("Token lengths", Text(f"skipped: {tok.get('skipped', 'not in the report')}",
                                                    style="dim"))
        else:
            total = int((report.get("counts") or {}).get("total") or 0)
            body = [tokens_summary(tok, total), histogram_text(tok.get("histogram") or (), tok.get("max_length"))]
            notes = tokens_notes(tok)
            parts += _section("Token lengths", *body, *([notes] if notes.plain else []))
    parts += _section("Label mask", *_label_mask(report.get("label_mask") or {}, styled))
    info = report.get("import") or {}
    if info:
        parts += _section("Import", *_import(info))
    return Group(*parts)


def format_report(report: dict[str, Any], width: int = WIDTH) -> str:
    """The report as plain text at most ``width`` columns wide (``tunedeck dataset show`` off a terminal)."""
    out = io.StringIO()
    console = Console(file=out, width=width, color_system=None, force_terminal=False, highlight=False,
                      emoji=False, markup=False, soft_wrap=False)  # fmt: skip
    console.print(report_renderable(report, styled=False))
    return "\n".join(line.rstrip() for line in out.getvalue().splitlines()) + "\n"


def print_report(report: dict[str, Any], file: TextIO) -> None:
    """Print the report to ``file``: in colour on a terminal, else as :func:`format_report`'s plain text."""
    if file.isatty():
        Console(file=file, highlight=False, emoji=False, markup=False).print(report_renderable(report))
    else:
        file.write(format_report(report))
