"""A DataTable that is refilled from the store on a timer without losing the user's place."""

from __future__ import annotations

from collections.abc import Sequence

from textual.widgets import DataTable

Row = tuple[str, tuple[str, ...]]
"""A row: its key (a database id, as text) and its cells."""


class LiveTable(DataTable):
    """A row-cursor table whose rows are replaced wholesale by `sync`, keeping the cursor on the same row."""

    def __init__(self, columns: Sequence[tuple[str, str]], **kwargs) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", False)
        super().__init__(**kwargs)
        self._column_spec = list(columns)
        self._shown: list[Row] = []

    def on_mount(self) -> None:
        for key, label in self._column_spec:
            self.add_column(label, key=key)

    @property
    def shown(self) -> list[Row]:
        """The rows on display, in order."""
        return list(self._shown)

    @property
    def current_key(self) -> str | None:
        """The key of the row under the cursor, or None when the table is empty."""
        if not self._shown:
            return None
        row = min(max(self.cursor_row, 0), len(self._shown) - 1)
        return self._shown[row][0]

    def sync(self, rows: Sequence[Row], select: str | None = None) -> None:
        """Show `rows`; the cursor stays on its row (by key), or goes to `select` when that is given and present."""
        rows = list(rows)
        if rows == self._shown:
            if select is not None:
                self._select(select, self.cursor_row)
            return
        old_keys = [key for key, _ in self._shown]
        new_keys = [key for key, _ in rows]
        if old_keys == new_keys:
            # Same rows in the same order: update only the cells that changed.
            column_keys = [key for key, _ in self._column_spec]
            for (key, old), (_, new) in zip(self._shown, rows, strict=True):
                for column, before, after in zip(column_keys, old, new, strict=True):
                    if before != after:
                        self.update_cell(key, column, after, update_width=True)  # a column may widen
            self._shown = rows
            if select is not None:
                self._select(select, self.cursor_row)
            return
        current = self.current_key
        index = self.cursor_row
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        self._shown = rows
        self._select(select if select in new_keys else current, index)

    def _select(self, key: str | None, fallback_index: int) -> None:
        if not self._shown:
            return
        keys = [k for k, _ in self._shown]
        index = keys.index(key) if key in keys else min(max(fallback_index, 0), len(keys) - 1)
        if index != self.cursor_row:
            self.move_cursor(row=index)
