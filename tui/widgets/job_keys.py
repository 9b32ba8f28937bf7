"""What the screens that act on jobs (Jobs, Job, Run) share: their back and cancel keys and how a refused or
failed action is worded."""

from __future__ import annotations

from textual.binding import Binding

from store.errors import TunedeckError


def back_binding(screen: str) -> Binding:
    """escape/backspace goes back; `screen` prefixes the binding id (e.g. `run.back`)."""
    return Binding("escape,backspace", "back", "Back", id=f"{screen}.back")


def cancel_binding(screen: str, action: str, label: str) -> Binding:
    """c cancels the job on show (or under the cursor); the binding id is `screen.action`."""
    return Binding("c", action, label, id=f"{screen}.{action}")


def job_bindings(screen: str, cancel_action: str, cancel_label: str) -> list[Binding]:
    """Back, then cancel: the first keys of the run and job screens."""
    return [back_binding(screen), cancel_binding(screen, cancel_action, cancel_label)]


def error_text(error: BaseException | None) -> str:
    """A worker's error as a notification: a TunedeckError's own message, else its type and message."""
    return str(error) if isinstance(error, TunedeckError) else f"{type(error).__name__}: {error}"
