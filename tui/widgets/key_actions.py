"""The key bindings a screen offers, read from the BINDINGS of its classes and the app's.

The help screen and the command palette are both built from this, so neither can
drift from what the keys actually do.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.dom import DOMNode
from textual.screen import Screen

OWN_PACKAGE = "tui."


@dataclass(frozen=True)
class KeyAction:
    """One action and the keys that trigger it."""

    section: str
    keys: tuple[str, ...]
    description: str
    action: str
    namespace: DOMNode
    ids: tuple[str, ...] = ()

    @property
    def keys_text(self) -> str:
        return " / ".join(self.keys)


def own_bindings(node: DOMNode) -> list[Binding]:
    """The bindings declared by tunedeck's own classes in `node`'s MRO (a subclass overrides a key), with
    the keys the user's keymap gives them."""
    keymap: dict[str, str] = getattr(node.app, "_keymap", {})
    by_key: dict[str, Binding] = {}
    for cls in reversed(type(node).__mro__):
        if not cls.__module__.startswith(OWN_PACKAGE) or "BINDINGS" not in cls.__dict__:
            continue
        for binding in Binding.make_bindings(cls.__dict__["BINDINGS"]):
            by_key[binding.key] = binding
    bindings: dict[str, Binding] = {}
    for binding in by_key.values():
        if binding.id and binding.id in keymap:
            # The keymap moves the binding; the key it leaves is free (unless another binding is moved there).
            for key in keymap[binding.id].split(","):
                bindings[key] = binding.with_key(key, key_display=None)
        else:
            bindings.setdefault(binding.key, binding)
    return list(bindings.values())


def _group(section: str, node: DOMNode, bindings: list[Binding]) -> list[KeyAction]:
    app = node.app
    grouped: dict[tuple[str, str], list[str]] = {}
    ids: dict[tuple[str, str], list[str]] = {}
    for binding in bindings:
        if not binding.description:
            continue
        grouped.setdefault((binding.action, binding.description), []).append(app.get_key_display(binding))
        same = ids.setdefault((binding.action, binding.description), [])
        if binding.id and binding.id not in same:
            same.append(binding.id)
    return [
        KeyAction(section, tuple(keys), description, action, node, tuple(ids[(action, description)]))
        for (action, description), keys in grouped.items()
    ]


def screen_title(screen: Screen) -> str:
    """What the help screen calls `screen`."""
    return getattr(screen, "HELP_TITLE", "") or type(screen).__name__


def key_actions(screen: Screen) -> list[KeyAction]:
    """The keys of the focused widget (a table's), then every action of `screen`, then the app-wide ones that
    neither rebinds."""
    app = screen.app
    focused = screen.focused
    widget: list[KeyAction] = []
    taken: set[str] = set()
    # A widget with a help title of its own (the tables) has its keys listed first; others' keys act for the screen.
    if focused is not None and type(focused).__module__.startswith(OWN_PACKAGE) and getattr(focused, "HELP_TITLE", ""):
        widget_bindings = own_bindings(focused)
        taken = {binding.key for binding in widget_bindings}
        widget = _group(focused.HELP_TITLE, focused, widget_bindings)  # type: ignore[attr-defined]
    mine = [binding for binding in own_bindings(screen) if binding.key not in taken]
    taken |= {binding.key for binding in mine}
    app_bindings = [binding for binding in own_bindings(app) if binding.key not in taken]
    if app.ENABLE_COMMAND_PALETTE and app.COMMAND_PALETTE_BINDING not in taken:
        app_bindings.append(Binding(app.COMMAND_PALETTE_BINDING, "command_palette", "Command palette"))
    return widget + _group(screen_title(screen), screen, mine) + _group("Everywhere", app, app_bindings)
