"""A DataTable refreshed by key: rows added, changed cells updated, gone rows removed, order fixed.

The cursor stays on the same row key (wherever new rows land) and the scroll position survives
every refresh. Columns never touch: each column after the first is drawn one cell wider than
its content, a blank on its left, and a value longer than its column is cut with `…` rather
than running into its neighbour (a number when it is drawn, a text where the column ends).
Home and End go to the first and last row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable
from textual.widgets.data_table import RowDoesNotExist

from dspy_top.viewer import format as fmt
from dspy_top.viewer.terminal import inert

Cell = str | Text
REBUILD_ABOVE = 32  # rows gone in one refresh beyond which the table is rebuilt, not pruned
GAP = 1  # blank cells on the left of every column but the first
SCROLLBAR = 1  # the vertical scrollbar's width (app.tcss)


@dataclass(frozen=True)
class Column:
    """One column: its key, header, content width and how the cell is right- or left-justified."""

    key: str
    label: str
    width: int  # the content's width; the table adds the gap before it
    right: bool = True
    sort: str | None = None  # the model's sort key this column sorts by, if any


def fit_cell(index: int, column: Column, cell: Cell) -> Text:
    """One cell as drawn: the gap on its left, and a right-justified value longer than the column cut to
    it with `…` (justified right, it would otherwise fill the gap). A longer left-justified cell keeps its
    whole text (the table cuts it where the column ends, after the gap). Plain strings are made inert here
    (Text cells are built inert by each table)."""
    if isinstance(cell, Text):
        too_long = column.right and cell.cell_len > column.width
        text = cell.copy() if index == 0 or too_long else cell
        if too_long:
            text.truncate(column.width, overflow="ellipsis")
    else:
        text = Text(inert(cell))
        if column.right and text.cell_len > column.width:
            text.truncate(column.width, overflow="ellipsis")
    if column.right:
        text.justify = "right"
    elif index:
        text = Text(" " * GAP).append_text(text)
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


class KeyedTable(DataTable):
    """A row-cursor DataTable with `sync(rows)`; subclasses declare their columns."""

    BINDINGS = [
        Binding("home", "first_row", "First row", show=False),
        Binding("end", "last_row", "Last row", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, cell_padding=0, **kwargs)
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
        for index, column in enumerate(columns):
            self.add_column(
                self._fit(index, column, column.label), width=self.drawn_width(index, column), key=column.key
            )

    @staticmethod
    def drawn_width(index: int, column: Column) -> int:
        """Cells the column takes on screen: its content and, after the first, the gap."""
        return column.width + (GAP if index else 0)

    @classmethod
    def width_of(cls, columns: Sequence[Column]) -> int:
        return sum(cls.drawn_width(index, column) for index, column in enumerate(columns))

    @staticmethod
    def first_width(width: int, fixed: Sequence[Column], least: int = 12) -> int:
        """What the first column gets of a `width`-cell pane, after the `fixed` columns and the scrollbar."""
        return max(least, width - SCROLLBAR - sum(column.width + GAP for column in fixed))

    @property
    def table_columns(self) -> tuple[Column, ...]:
        return self._columns

    def header_label(self, column_key: str, label: str, style: str = "") -> None:
        """Change a header's text or style in place (the sorted column's)."""
        for index, column in enumerate(self._columns):
            if column.key == column_key:
                text = Text(label)
                text.stylize(style)  # the label's letters only, not the padding that justifies it
                self.columns[column_key].label = self._fit(index, column, text)  # type: ignore[index]
        self.refresh()

    def set_title(self, title: str) -> None:
        """Set the border title only when it changed (setting it repaints the widget), fitted to the
        pane's width by whole parts (fmt.fit_title) rather than cut anywhere.

        As plain text, never markup: titles hold names a job chose (a `[` is not a style)."""
        self._title_wanted = title
        if self.size.width > 4:
            title = fmt.fit_title(title, self.size.width - 2)
        if getattr(self, "_shown_title", None) != title:
            self._shown_title = title
            self.border_title = Text(inert(title))

    def on_resize(self) -> None:
        wanted = getattr(self, "_title_wanted", None)
        if wanted is not None:
            self.set_title(wanted)

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

    def action_first_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last_row(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def sync(self, rows: Sequence[tuple[str, Sequence[Cell]]]) -> None:
        """Make the table hold exactly `rows`, in this order, touching only what changed."""
        cursor_key = self.cursor_key
        cursor_index = self.cursor_row
        wanted = {key for key, _ in rows}
        gone = [k for k in self._order if k not in wanted]
        if len(gone) > REBUILD_ABOVE and len(gone) * 4 > len(self._order):
            # DataTable.remove_row costs O(rows) each: when most rows go, rebuilding is far
            # cheaper. The cursor and scroll position are put back.
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
            cells = self._fit_row(cells)
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
                self.move_cursor(row=index, scroll=False)  # on its row, wherever new rows landed
        elif order and cursor_index >= len(order):
            self.move_cursor(row=len(order) - 1, scroll=False)

    def _rebuild(self, rows: Sequence[tuple[str, Sequence[Cell]]], cursor_key: str | None, cursor_index: int) -> None:
        scroll_y = self.scroll_y
        self.clear()
        self._cells.clear()
        for key, cells in rows:
            cells = self._fit_row(cells)
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

    def _fit_row(self, cells: Sequence[Cell]) -> tuple[Text, ...]:
        # Always fresh Text objects for the first cell: `_reorder` relies on it being unique to its row.
        return tuple(self._fit(index, column, cell) for index, (column, cell) in enumerate(zip(self._columns, cells)))

    @staticmethod
    def _fit(index: int, column: Column, cell: Cell) -> Text:
        return fit_cell(index, column, cell)

    def reset_rows(self) -> None:
        """Drop every row (a filter or focus change, not a refresh)."""
        self.clear()
        self._cells.clear()
        self._order = []
