"""The command palette's entries: every key binding of the screen it was opened on."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.widgets.key_actions import key_actions


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
