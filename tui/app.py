"""The full-screen app `tunedeck` opens with no verb.

Start-up imports only Textual and the store: no torch, transformers, peft, trl,
llama_cpp or engine (a test checks this).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

from store.db import Store
from tui.screens.help import HelpScreen
from tui.screens.keys import key_actions
from tui.screens.projects import ProjectsScreen

REFRESH_SECONDS = 1.5


class BindingCommands(Provider):
    """Command palette entries for every key binding of the screen it was opened on."""

    def _commands(self) -> list[tuple[str, str, partial]]:
        out = []
        for item in key_actions(self.screen):
            if item.action == "command_palette":
                continue
            help_text = f"{item.section} · key: {item.keys_text}"
            out.append((item.description, help_text, partial(self.app.run_action, item.action, item.namespace)))
        return out

    async def discover(self) -> Hits:
        for title, help_text, command in self._commands():
            yield DiscoveryHit(title, command, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, command in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), command, text=title, help=help_text)


class TunedeckApp(App[None]):
    """Projects list, project tabs, help and dialogs over one store."""

    TITLE = "tunedeck"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {BindingCommands}
    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        # Not a priority binding: in a text box, q types a q.
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, store: Store, *, refresh_seconds: float = REFRESH_SECONDS) -> None:
        super().__init__()
        self.store = store
        self.refresh_seconds = refresh_seconds

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


def run_app(store: Store) -> None:
    """Run the app until the user quits."""
    TunedeckApp(store).run()
