"""The chat pane's session keys: export the saved session as Markdown (ctrl+s), add it to a dataset (ctrl+t),
list the saved sessions to reopen one (ctrl+o). The work is core/chat.py's; this is the screen's side."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from store.errors import TunedeckError

if TYPE_CHECKING:
    from core.chat import ChatRecorder
    from store.db import Store


class SessionActions:
    """Mixed into ChatScreen, which provides the recorder, the store, the writer thread and the app."""

    recorder: ChatRecorder | None
    project: str | None
    busy: bool
    load_options: dict[str, Any]
    store: Store
    _write: Callable[[Callable[[], Any]], Future]
    _ui: Callable[..., bool]

    def _saved_session(self) -> int | None:
        session_id = self.recorder.session_id if self.recorder is not None else None
        if session_id is None:
            self.notify("Nothing saved yet: ask something first.", severity="warning")
        return session_id

    def _after_write(self, future: Future, done: Callable[[Any], str], title: str) -> None:
        def report(result: Future) -> None:
            try:
                message, severity = done(result.result()), "information"
            except Exception as exc:
                message = str(exc) if isinstance(exc, TunedeckError) else f"{type(exc).__name__}: {exc}"
                severity = "error"
            self._ui(lambda: self.notify(message, title=title, severity=severity, timeout=8))

        future.add_done_callback(report)

    def action_export(self) -> None:
        """ctrl+s: write the session as Markdown under the tunedeck home."""
        session_id = self._saved_session()
        if session_id is None:
            return
        from core.chat import export_markdown

        future = self._write(lambda: export_markdown(self.store, session_id))
        self._after_write(future, lambda path: f"Saved to {path}", "Exported")

    def action_to_dataset(self) -> None:
        """ctrl+t: queue the session's finished exchanges for import, alone or appended to a dataset's rows."""
        session_id = self._saved_session()
        if session_id is None:
            return
        from core.chat import session_to_dataset
        from tui.widgets.submit_form import ActionDialog, FormField

        def export(values: dict[str, str]) -> Any:
            return session_to_dataset(self.store, session_id, self.project,
                                      append_to=values.get("append_to") or None)

        def queued(done: Any) -> None:
            if done is not None:
                self.notify(f"Importing {done.examples} example(s) as dataset {done.name} (job {done.job_id}).",
                            title="Added to a dataset", timeout=8)

        fields = [FormField("append_to", "Append to dataset (name or id; empty: a new dataset of this chat)")]
        self.app.push_screen(ActionDialog("Add this chat to a dataset", fields, export), queued)

    def action_sessions(self) -> None:
        """ctrl+o: the saved sessions; enter reopens one here."""
        from tui.screens.chat_sessions import ChatSessionsScreen

        def reopen(session_id: int | None) -> None:
            if session_id is not None and not self.busy:
                options = {k: v for k, v in self.load_options.items() if k != "n_ctx"}  # the session's own
                self.app.switch_screen(type(self)(session_id=session_id, project=self.project,  # type: ignore[call-arg]
                                                 load_options=options))

        self.app.push_screen(ChatSessionsScreen(), reopen)
