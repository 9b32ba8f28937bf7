"""A text box that completes file-system paths as you type; tab or right accepts the completion."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from textual.binding import Binding
from textual.suggester import Suggester
from textual.widgets import Input

DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
MAX_SCAN = 5000  # entries looked at per directory: a huge folder never stalls a key press


def path_candidates(value: str, suffixes: Iterable[str] | None = DATA_SUFFIXES, limit: int = 200) -> list[str]:
    """Completions of `value`, each `value` plus the rest of a name: folders (ending in /) first, then files.

    Files count only with one of `suffixes` (any file when None). Hidden entries show only once
    the typed name starts with a dot. `~` is expanded for the lookup but kept in the result.
    """
    if not value:
        return []
    folder_text, _, prefix = value.rpartition("/")
    if "/" in value:
        folder = Path(os.path.expanduser(folder_text or "/"))
    else:
        folder = Path(".")
        if value.startswith("~"):
            return [value + "/"] if os.path.isdir(os.path.expanduser(value)) else []
    suffixes = tuple(s.lower() for s in suffixes) if suffixes is not None else None
    folders: list[str] = []
    files: list[str] = []
    try:
        with os.scandir(folder) as entries:
            for n, entry in enumerate(entries):
                if n >= MAX_SCAN:
                    break
                name = entry.name
                if not name.startswith(prefix) or (name.startswith(".") and not prefix.startswith(".")):
                    continue
                try:
                    is_dir = entry.is_dir()
                except OSError:
                    continue
                if is_dir:
                    folders.append(name + "/")
                elif suffixes is None or name.lower().endswith(suffixes):
                    files.append(name)
    except OSError:
        return []
    head = value[: len(value) - len(prefix)]
    return [head + name for name in sorted(folders) + sorted(files)][:limit]


class PathSuggester(Suggester):
    """Suggests the first completion of `path_candidates` that adds something to the typed text."""

    def __init__(self, suffixes: Iterable[str] | None = DATA_SUFFIXES) -> None:
        super().__init__(use_cache=False, case_sensitive=True)  # the file system changes; paths are case-sensitive
        self.suffixes = tuple(suffixes) if suffixes is not None else None

    async def get_suggestion(self, value: str) -> str | None:
        for candidate in path_candidates(value, self.suffixes):
            if len(candidate) > len(value):
                return candidate
        return None


class PathInput(Input):
    """An Input with path completion: the completion shows dimmed; tab (or right, at the end) takes it.

    Tab moves to the next field when there is nothing to complete.
    """

    BINDINGS = [Binding("tab", "complete", "Complete the path", show=False, id="path_input.complete")]

    def __init__(self, *args, suffixes: Iterable[str] | None = DATA_SUFFIXES, **kwargs) -> None:
        kwargs.setdefault("suggester", PathSuggester(suffixes))
        super().__init__(*args, **kwargs)

    @property
    def completion(self) -> str:
        """The completion on offer, or '' when there is none."""
        suggestion = self._suggestion
        if suggestion and len(suggestion) > len(self.value) and suggestion.startswith(self.value):
            return suggestion
        return ""

    def action_complete(self) -> None:
        completion = self.completion
        if completion and self.cursor_at_end:
            self.value = completion
            self.cursor_position = len(completion)
        else:
            self.screen.focus_next()
