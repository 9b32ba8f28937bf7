"""A DataTable that is refilled from the store on a timer without losing the user's place.

Every list table is one of these, so they share one set of keys: j/k move, `/` filters (a box above the
table: the rows holding the text in any cell), o sorts by the next column and O reverses the order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable, Input
from textual.widgets.data_table import ColumnKey

Row = tuple[str, tuple[str, ...]]
"""A row: its key (a database id, as text) and its cells."""

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")
UP, DOWN = " ▲", " ▼"


def sort_key(cell: str) -> tuple[int, float, str]:
    """Numbers (a cell that starts with one: 12, 3.5e-4, 80%) before text, each in natural order."""
    match = _NUMBER.match(cell.strip())
    if match:
        return (0, float(match.group()), cell)
    return (1, 0.0, cell.lower())


class KeyTable(DataTable):
    """A DataTable whose cursor also moves with j and k."""

    HELP_TITLE = "Table"
    BINDINGS = [
        Binding("j", "cursor_down", "Cursor down", show=False, id="table.cursor_down"),
        Binding("k", "cursor_up", "Cursor up", show=False, id="table.cursor_up"),
    ]


class TableFilter(Input):
    """The filter box of one LiveTable (`for_id`): typing narrows the table, esc clears and hides it."""

    BINDINGS = [Binding("escape", "clear", "Clear the filter", show=False, id="table_filter.clear")]

    def __init__(self, for_id: str, **kwargs) -> None:
        kwargs.setdefault("placeholder", "filter · esc clears")
        kwargs.setdefault("compact", True)
        super().__init__(**kwargs)
        self.for_id = for_id
        self.add_class("table-filter")

    @property
    def table(self) -> LiveTable:
        return self.screen.query_one(f"#{self.for_id}", LiveTable)

    def _on_input_changed(self, event: Input.Changed) -> None:
        if event.input is self:
            self.table.set_filter(event.value.strip())

    def action_clear(self) -> None:
        """Show every row again, hide the box and give the table the focus."""
        self.value = ""
        self.display = False
        self.table.set_filter("")
        self.table.focus()


class LiveTable(KeyTable):
    """A row-cursor table whose rows are replaced wholesale by `sync`, keeping the cursor on the same row;
    `/` filters and o/O sort what is shown."""

    HELP_TITLE = "Table"

    BINDINGS = [
        Binding("slash", "filter", "Filter", show=False, id="table.filter"),
        Binding("o", "sort_next", "Sort by the next column", show=False, id="table.sort_next"),
        Binding("O", "sort_reverse", "Reverse the sort", show=False, id="table.sort_reverse"),
    ]

    def __init__(self, columns: Sequence[tuple[str, str]], **kwargs) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", False)
        super().__init__(**kwargs)
        self._column_spec = list(columns)
        self._all: list[Row] = []
        self._shown: list[Row] = []
        self.filter_text = ""
        self.sort_column: int | None = None  # None: the order `sync` was given
        self.sort_reverse = False

    def on_mount(self) -> None:
        for key, label in self._column_spec:
            self.add_column(label, key=key)

    @property
    def shown(self) -> list[Row]:
        """The rows on display, in order (filtered and sorted)."""
        return list(self._shown)

    @property
    def all_rows(self) -> list[Row]:
        """Every row `sync` was last given, in its order."""
        return list(self._all)

    @property
    def current_key(self) -> str | None:
        """The key of the row under the cursor, or None when the table is empty."""
        if not self._shown:
            return None
        row = min(max(self.cursor_row, 0), len(self._shown) - 1)
        return self._shown[row][0]

    # -- filter and sort ---------------------------------------------------------

    def _view(self) -> list[Row]:
        needle = self.filter_text.lower()
        rows = [row for row in self._all if not needle or any(needle in cell.lower() for cell in row[1])]
        if self.sort_column is not None:
            column = self.sort_column
            rows.sort(key=lambda row: sort_key(row[1][column]), reverse=self.sort_reverse)
        return rows

    def set_filter(self, text: str) -> None:
        """Show only the rows with `text` (any case) in one of their cells; "" shows every row."""
        self.filter_text = text
        self._render_rows(self._view())

    def set_sort(self, column: int | None, reverse: bool = False) -> None:
        """Sort by the cells of `column` (numbers by value), or keep the given order (None)."""
        self.sort_column = column
        self.sort_reverse = reverse
        for index, (key, label) in enumerate(self._column_spec):
            mark = (DOWN if reverse else UP) if index == column else ""
            spec = self.columns.get(ColumnKey(key))
            if spec is not None:
                spec.label = Text(label + mark)
                spec.content_width = max(spec.content_width, spec.label.cell_len)
        self._clear_caches()  # the header is drawn from a cache
        self._require_update_dimensions = True
        self.refresh()
        self._render_rows(self._view())

    def action_sort_next(self) -> None:
        """o: sort by the next column; after the last one, back to the given order."""
        nxt = 0 if self.sort_column is None else self.sort_column + 1
        self.set_sort(nxt if nxt < len(self._column_spec) else None)

    def action_sort_reverse(self) -> None:
        """O: the current sort the other way round (sorting by the first column if none was chosen)."""
        self.set_sort(0 if self.sort_column is None else self.sort_column, not self.sort_reverse)

    def action_filter(self) -> None:
        """/: show this table's filter box (made above the table the first time) and focus it."""
        box = self.filter_box
        if box is None:
            box = TableFilter(self.id or "", id=f"{self.id}-filter")
            self.parent.mount(box, before=self)  # type: ignore[union-attr]
        box.display = True
        box.focus()

    @property
    def filter_box(self) -> TableFilter | None:
        """This table's filter box, if the screen has one."""
        return next((box for box in self.screen.query(TableFilter) if box.for_id == self.id), None)

    # -- rows --------------------------------------------------------------------

    def sync(self, rows: Sequence[Row], select: str | None = None) -> None:
        """Show `rows` (filtered and sorted as the user chose); the cursor stays on its row (by key), or goes
        to `select` when that is given and shown."""
        self._all = list(rows)
        self._render_rows(self._view(), select)

    def _render_rows(self, rows: list[Row], select: str | None = None) -> None:
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
