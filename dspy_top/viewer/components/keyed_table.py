"""A DataTable refreshed by key: rows added, changed cells updated, gone rows removed, order fixed.

The cursor stays on the same row key and the scroll position survives every refresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from dspy_top.viewer.terminal import inert

Cell = str | Text
REBUILD_ABOVE = 32  # rows gone in one refresh beyond which the table is rebuilt, not pruned


@dataclass(frozen=True)
class Column:
    """One column: its key, header, width and how the cell is right- or left-justified."""

    key: str
    label: str
    width: int
    right: bool = True
    sort: str | None = None  # the model's sort key this column sorts by, if any


class KeyedTable(DataTable):
    """A row-cursor DataTable with `sync(rows)`; subclasses declare their columns."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._columns: tuple[Column, ...] = ()
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._order: list[str] = []

    # --- columns ------------------------------------------------------------------

    def set_columns(self, columns: Sequence[Column]) -> None:
        """Replace the columns (on a layout change, not on a refresh); rows come back on the next sync."""
        columns = tuple(columns)
        if columns == self._columns:
            return
        self._columns = columns
        self.clear(columns=True)
        self._cells.clear()
        self._order = []
        for column in columns:
            label = Text(column.label, justify="right" if column.right else "left")
            self.add_column(label, width=column.width, key=column.key)

    @property
    def table_columns(self) -> tuple[Column, ...]:
        return self._columns

    def header_label(self, column_key: str, label: str) -> None:
        """Change a header's text in place (the sort arrow)."""
        for column in self._columns:
            if column.key == column_key:
                text = Text(label, justify="right" if column.right else "left")
                self.columns[column_key].label = text  # type: ignore[index]
        self.refresh()

    def set_title(self, title: str) -> None:
        """Set the border title only when it changed (setting it repaints the widget).

        As plain text, never markup: titles hold names a job chose (a `[` is not a style)."""
        if getattr(self, "_shown_title", None) != title:
            self._shown_title = title
            self.border_title = Text(inert(title))

    # --- rows ---------------------------------------------------------------------

    @property
    def cursor_key(self) -> str | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        try:
            return self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        except Exception:
            return None

    @property
    def keys(self) -> list[str]:
        return list(self._order)

    def sync(self, rows: Sequence[tuple[str, Sequence[Cell]]]) -> None:
        """Make the table hold exactly `rows`, in this order, touching only what changed."""
        cursor_key = self.cursor_key
        cursor_index = self.cursor_row
        wanted = {key for key, _ in rows}
        gone = [k for k in self._order if k not in wanted]
        if len(gone) > REBUILD_ABOVE and len(gone) * 4 > len(self._order):
            # DataTable.remove_row costs O(rows) each: when most rows go (a busy history),
            # rebuilding is far cheaper. The cursor and scroll position are put back.
            self._rebuild(rows, cursor_key, cursor_index)
            return
        for key in gone:
            try:
                self.remove_row(key)
            except RowDoesNotExist:
                pass
            self._cells.pop(key, None)
        keys_in_table = set(self._cells)
        for key, cells in rows:
            cells = tuple(self._justify(cells))
            previous = self._cells.get(key)
            if previous is None:
                self.add_row(*cells, key=key)
            elif previous != cells:
                merged = []
                for column, old, new in zip(self._columns, previous, cells):
                    if old != new:
                        self.update_cell(key, column.key, new)
                        merged.append(new)
                    else:
                        merged.append(old)  # the table holds this very object
                cells = tuple(merged)
            else:
                cells = previous
            self._cells[key] = cells
        order = [key for key, _ in rows]
        current = [key for key in self._order if key in wanted] + [k for k in order if k not in keys_in_table]
        if current != order:
            self._reorder(order)
        self._order = order
        if cursor_key is not None and cursor_key in wanted:
            index = order.index(cursor_key)
            if index != self.cursor_row:
                self.move_cursor(row=index, scroll=False)
        elif order and cursor_index >= len(order):
            self.move_cursor(row=len(order) - 1, scroll=False)

    def _rebuild(self, rows: Sequence[tuple[str, Sequence[Cell]]], cursor_key: str | None, cursor_index: int) -> None:
        scroll_y = self.scroll_y
        self.clear()
        self._cells.clear()
        for key, cells in rows:
            cells = tuple(self._justify(cells))
            self.add_row(*cells, key=key)
            self._cells[key] = cells
        self._order = [key for key, _ in rows]
        if cursor_key is not None and cursor_key in self._cells:
            self.move_cursor(row=self._order.index(cursor_key), scroll=False)
        elif self._order:
            self.move_cursor(row=min(cursor_index, len(self._order) - 1), scroll=False)
        self.scroll_to(y=scroll_y, animate=False, immediate=False)

    def _reorder(self, order: list[str]) -> None:
        # DataTable.sort hands the key function only the cell values; the first cell of every
        # row is a distinct Text object, so its id() names the row.
        position = {id(self._cells[key][0]): index for index, key in enumerate(order)}
        self.sort(key=lambda values: position.get(id(values[0]), len(position)))

    def _justify(self, cells: Sequence[Cell]):
        for index, (column, cell) in enumerate(zip(self._columns, cells)):
            if index == 0:
                # Always a fresh Text: `_reorder` relies on it being unique to its row.
                yield cell.copy() if isinstance(cell, Text) else Text(inert(cell), no_wrap=True, overflow="ellipsis")
            elif isinstance(cell, Text):
                if column.right:
                    cell.justify = "right"
                yield cell
            else:  # plain strings are made inert here too (Text cells are built inert by each table)
                yield Text(inert(cell), justify="right" if column.right else "left", no_wrap=True,
                           overflow="ellipsis")

    def reset_rows(self) -> None:
        """Drop every row (a filter or focus change, not a refresh)."""
        self.clear()
        self._cells.clear()
        self._order = []

