"""Sort state shared by the sortable keyed tables: which column, which way, its header underlined."""

from __future__ import annotations


class SortableColumns:
    """Mixed into a `KeyedTable` that has `table_columns`, `header_label` and `redraw`.

    `ascending_first` names the columns (text ones) that sort A→Z when first chosen; every
    other column sorts largest first, as top does.
    """

    sort_key: str
    descending: bool
    ascending_first: frozenset[str] = frozenset()

    def sorted_by(self, column) -> bool:
        """Whether the header of `column` carries the sort arrow."""
        return column.sort == self.sort_key

    def _label_headers(self) -> None:
        # The sorted column's header is underlined (its direction is in the title): an arrow
        # would need one more cell in every sortable column.
        for column in self.table_columns:
            self.header_label(column.key, column.label, "bold underline" if self.sorted_by(column) else "")

    def set_sort(self, key: str, descending: bool | None = None) -> None:
        if key == self.sort_key and descending is None:
            self.descending = not self.descending
        else:
            self.sort_key = key
            self.descending = (key not in self.ascending_first) if descending is None else descending
        self._label_headers()
        self.redraw()

    def sort_by_header(self, column_key: str) -> None:
        """A click on a column's header sorts by it (a second click reverses)."""
        column = next((c for c in self.table_columns if c.key == column_key), None)
        if column is not None and column.sort:
            self.set_sort(column.sort)

    def reverse(self) -> None:
        self.descending = not self.descending
        self._label_headers()
        self.redraw()
