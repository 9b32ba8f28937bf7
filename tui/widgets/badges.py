"""Short coloured labels (Textual markup) for states shown in tables and headers."""

from __future__ import annotations

VERDICT_BADGES = {"ok": "[green]✓ ok[/]", "warn": "[yellow]! warn[/]", "fail": "[red]✗ fail[/]"}
STATUS_BADGES = {"ok": "[green]✓[/]", "warn": "[yellow]![/]", "fail": "[red]✗[/]"}


def verdict_badge(verdict: str | None) -> str:
    """A lint verdict as a coloured badge ("-" when there is none)."""
    return VERDICT_BADGES.get(verdict or "", "[dim]-[/]")


def status_badge(status: str | None) -> str:
    """A checklist item's status as a one-cell coloured mark."""
    return STATUS_BADGES.get(status or "", "[dim]?[/]")


JOB_STATUS_STYLE = {
    "queued": "dim",
    "running": "bold cyan",
    "completed": "bold green",
    "failed": "bold red",
    "cancelled": "bold yellow",
    "interrupted": "bold magenta",
}
JOB_STATUS_MARK = {"queued": "…", "running": "▶", "completed": "✓", "failed": "✗", "cancelled": "■",
                   "interrupted": "!"}


def status_text(status: str) -> str:
    """A job status as coloured markup with a mark (the run and job screens' headers)."""
    return f"[{JOB_STATUS_STYLE.get(status, 'dim')}]{JOB_STATUS_MARK.get(status, '?')} {status}[/]"
