"""The user's key overrides: `$XDG_CONFIG_HOME/tunedeck/keys.toml` (else `~/.config/tunedeck/keys.toml`).

Every binding in the app has an id (`screen.action`, e.g. `run.cancel_run`, `table.filter`, `app.jobs`; `?`
lists them). The file maps ids to keys, one or more separated by commas:

    "app.jobs" = "ctrl+j"
    [run]
    cancel_run = "x,delete"

(a table `[run]` is the same as the prefix `run.`). An unknown id, a value that is not a key string or a
file that is not TOML is an error naming the file and the entry; nothing is ignored in silence.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import tomllib
from pathlib import Path

from textual.binding import Binding
from textual.dom import DOMNode

from store.errors import TunedeckError

KEYS_FILE = "keys.toml"
PACKAGES = ("tui.screens", "tui.widgets")


class KeymapError(TunedeckError):
    """The keys file cannot be used."""


def keys_path(environ: dict[str, str] | None = None) -> Path:
    """Where the user's key overrides are read from."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "tunedeck" / KEYS_FILE


def _subclasses(cls: type) -> list[type]:
    found: list[type] = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


def binding_ids() -> dict[str, Binding]:
    """Every binding id of tunedeck's screens, widgets and app, with its default binding."""
    from tui import app as _app  # noqa: F401  (the app's own bindings)

    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{package_name}.{module.name}")
    ids: dict[str, Binding] = {}
    for cls in _subclasses(DOMNode):
        if not cls.__module__.startswith("tui.") or "BINDINGS" not in cls.__dict__:
            continue
        for binding in Binding.make_bindings(cls.__dict__["BINDINGS"]):
            if binding.id:
                ids.setdefault(binding.id, binding)
    return ids


def _flatten(table: dict, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def parse_keymap(text: str, source: str = KEYS_FILE) -> dict[str, str]:
    """The overrides in `text` (TOML) as binding id -> keys; KeymapError names `source` and the bad entry."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise KeymapError(f"{source}: not valid TOML: {error}") from None
    known = binding_ids()
    keymap: dict[str, str] = {}
    for binding_id, value in _flatten(table).items():
        if binding_id not in known:
            close = sorted(i for i in known if i.split(".")[-1] == binding_id.split(".")[-1])
            hint = f" (did you mean {', '.join(close)}?)" if close else " (press ? in the app to see the ids)"
            raise KeymapError(f"{source}: {binding_id}: no binding has this id{hint}")
        keys = [key.strip() for key in value.split(",")] if isinstance(value, str) else []
        if not keys or not all(keys) or any(" " in key for key in keys):
            raise KeymapError(
                f"{source}: {binding_id}: expected a key string such as \"x\" or \"ctrl+x,f5\", got {value!r}"
            )
        keymap[binding_id] = ",".join(keys)
    return keymap


def load_keymap(path: Path | None = None) -> dict[str, str]:
    """The overrides in the keys file, or {} when there is none."""
    path = keys_path() if path is None else path
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as error:
        raise KeymapError(f"{path}: cannot be read: {error}") from None
    return parse_keymap(text, str(path))
