"""What the modal forms share: submitting through a worker thread, one submit at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from textual.worker import Worker, WorkerState

from store.errors import TunedeckError

SUBMIT_GROUP = "submit"


class SubmitInWorker:
    """Mixin for a ModalScreen form whose submit does store or engine work in a worker thread.

    The result dismisses the form; a failure stays in the form through `show_error` (a
    TunedeckError's own message, else `submit_failure` and the error), so nothing is lost.
    """

    submit_failure = "could not submit"
    _busy = False

    def show_error(self, message: str) -> None:  # each form shows errors its own way
        raise NotImplementedError

    def submit_failed(self) -> None:
        """Hook run when a submit failed, before its message is shown (refresh, refocus...)."""

    def submit_work(self, work: Callable[[], Any]) -> None:
        """Run `work()` in a thread unless a submit is already running."""
        if self._busy:
            return
        self._busy = True
        self.show_error("")
        self.run_worker(work, group=SUBMIT_GROUP, thread=True, exit_on_error=False)  # type: ignore[attr-defined]

    def submit_finished(self, event: Worker.StateChanged) -> bool:
        """Handle the end of the submit worker; False when the event is about another worker."""
        if event.worker.group != SUBMIT_GROUP:
            return False
        if event.state == WorkerState.SUCCESS:
            self.dismiss(event.worker.result)  # type: ignore[attr-defined]
        elif event.state in (WorkerState.ERROR, WorkerState.CANCELLED):
            self._busy = False
            error = event.worker.error
            self.submit_failed()
            self.show_error(str(error) if isinstance(error, TunedeckError) else f"{self.submit_failure}: {error}")
        return True
