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
