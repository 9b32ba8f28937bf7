"""The full-screen app `tunedeck` opens with no verb.

Start-up imports only Textual and the store: no torch, transformers, peft, trl,
llama_cpp or engine (a test checks this).
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from store.db import Store
from tui.screens.help import HelpScreen
from tui.screens.projects import ProjectsScreen

REFRESH_SECONDS = 1.5


def _binding_commands() -> type:
    # Textual accepts a callable returning the provider: the palette's modules load on first use.
    from tui.palette import BindingCommands

    return BindingCommands


class TunedeckApp(App[None]):
    """Projects list, project tabs, help and dialogs over one store."""

    TITLE = "tunedeck"
    CSS_PATH = "app.tcss"
    NOTIFICATION_TIMEOUT = 3  # seconds: Textual's 5 keeps a toast over a form's fields while one types
    COMMANDS = App.COMMANDS | {_binding_commands}
    BINDINGS = [
        Binding("question_mark", "help", "Help", id="app.help"),
        # Not a priority binding: in a text box, q types a q.
        Binding("q", "quit", "Quit", id="app.quit"),
        Binding("g", "gpu", "GPUs", id="app.gpu"),
        Binding("J", "jobs", "Jobs", id="app.jobs"),  # j/k move in tables
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, id="app.interrupt"),
    ]

    def __init__(
        self, store: Store, *, refresh_seconds: float = REFRESH_SECONDS, keymap: dict[str, str] | None = None
    ) -> None:
        super().__init__()
        self.store = store
        self.refresh_seconds = refresh_seconds
        if keymap:
            self.set_keymap(keymap)  # binding id -> keys, from the user's keys.toml (tui/keymap.py)

    def get_default_screen(self) -> Screen:
        return ProjectsScreen()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        # Quit and help come from the bindings provider; keep the rest (theme, maximize).
        for command in super().get_system_commands(screen):
            if command.title not in {"Quit", "Keys", "Screenshot"}:
                yield command

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            self.screen.dismiss(None)
            return
        self.push_screen(HelpScreen(self.screen))

    def action_gpu(self) -> None:
        from tui.screens.gpu import GpuScreen

        if not isinstance(self.screen, GpuScreen):
            self.push_screen(GpuScreen())

    def action_jobs(self) -> None:
        from tui.screens.jobs import JobsScreen

        if not isinstance(self.screen, JobsScreen):
            self.push_screen(JobsScreen())


def run_app(store: Store) -> None:
    """Run the app until the user quits, with the key overrides of the user's keys file."""
    from tui.keymap import load_keymap

    TunedeckApp(store, keymap=load_keymap()).run()
