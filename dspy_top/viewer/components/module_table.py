"""The module table: the program as a tree (or flat list) of module paths, sortable and filterable."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from dspy_top.model.calls import CallQuery
from dspy_top.viewer import format as fmt
from dspy_top.viewer.components.keyed_table import Column, KeyedTable
from dspy_top.viewer.components.sorting import SortableColumns
from dspy_top.viewer.terminal import inert

if TYPE_CHECKING:
    from dspy_top.model import Snapshot
    from dspy_top.model.tree import ModuleRow

# Content widths (the table adds one blank between columns): each holds the longest value its
# format makes (fmt.count and fmt.tokens stay within 7, fmt.seconds within 6).
WIDE = (
    Column("state", "STATE", 6, right=False, sort="state"),
    Column("calls", "CALLS", 7, sort="calls"),
    Column("in_flight", "INFL", 4, sort="in_flight"),
    Column("prompt_tokens", "IN TOK", 6, sort="prompt_tokens"),
    Column("completion_tokens", "OUT TOK", 7, sort="completion_tokens"),
    Column("tokens_per_sec", "TOK/S", 5, sort="tokens_per_sec"),
    Column("cost", "COST", fmt.COST_WIDTH, sort="cost"),
    Column("share", "%COST", 5, sort="share"),
    Column("p50", "P50", 6, sort="p50"),
    Column("p95", "P95", 6, sort="p95"),
    Column("errors", "ERR", 5, sort="errors"),
    Column("cache_hits", "HITS", 5, sort="cache_hits"),
    Column("saved", "SAVED", fmt.DOLLARS_WIDTH, sort="saved"),
)
NARROW = (
    Column("calls", "CALLS", 7, sort="calls"),
    Column("tokens_per_sec", "TOK/S", 5, sort="tokens_per_sec"),
    Column("cost", "COST", fmt.COST_WIDTH, sort="cost"),
    Column("share", "%COST", 5, sort="share"),
    Column("p95", "P95", 6, sort="p95"),
    Column("errors", "ERR", 5, sort="errors"),
    Column("cache_hits", "HITS", 5, sort="cache_hits"),
)
SORT_NAMES = {
    "module": "module",
    "state": "state",
    "calls": "calls",
    "in_flight": "in flight",
    "prompt_tokens": "in tokens",
    "completion_tokens": "out tokens",
    "tokens_per_sec": "tok/s",
    "cost": "cost",
    "share": "cost",
    "p50": "p50",
    "p95": "p95",
    "errors": "errors",
    "cache_hits": "cache hits",
    "saved": "cache savings",
}


class ModuleTable(SortableColumns, KeyedTable):
    """Rows from `Snapshot.modules`; expansion, sort and tree/flat mode live here."""

    ascending_first = frozenset({"module"})

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sort_key = "cost"
        self.descending = True
        self.tree_mode = True
        self.collapsed: set[str] = set()
        self.filter_query = CallQuery("")
        self.narrow = False
        self._rows: list[ModuleRow] = []
        self._snapshot: Snapshot | None = None

    # --- layout -----------------------------------------------------------------

    def layout_for(self, width: int, narrow: bool) -> None:
        self.narrow = narrow
        fixed = NARROW if narrow else WIDE
        name_width = self.first_width(width, fixed, least=16)
        self.set_columns((Column("module", "MODULE", name_width, right=False, sort="module"), *fixed))
        self._label_headers()

    @property
    def sortable(self) -> list[str]:
        return [c.sort for c in self.table_columns if c.sort]

    def sorted_by(self, column) -> bool:
        return column.sort == self.sort_key or (self.sort_key == "cost" and column.key == "cost")

    # --- state changes (from the app's key bindings) ----------------------------------

    def step_sort(self, step: int) -> None:
        columns = [c for c in self.sortable if c != "share"]
        current = self.sort_key if self.sort_key in columns else "cost"
        index = (columns.index(current) + step) % len(columns)
        self.set_sort(columns[index], descending=columns[index] != "module")

    def toggle_tree(self) -> None:
        self.tree_mode = not self.tree_mode
        self.redraw()

    def toggle_row(self, path: str | None = None) -> None:
        path = path or self.cursor_key
        row = next((r for r in self._rows if r.node.path == path), None)
        if row is None or not row.expandable:
            return
        if path in self.collapsed:
            self.collapsed.discard(path)
        else:
            self.collapsed.add(path)
        self.redraw()

    def expand_all(self) -> None:
        self.collapsed.clear()
        self.redraw()

    def collapse_all(self) -> None:
        def parents(nodes):
            for node in nodes:
                if node.children:
                    yield node.path
                    yield from parents(node.children)

        self.collapsed = set(parents(self._snapshot.modules)) if self._snapshot else set()
        self.redraw()

    def set_query(self, query: CallQuery) -> None:
        self.filter_query = query
        self.redraw()

    # --- rendering ------------------------------------------------------------------

    def redraw(self) -> None:
        if self._snapshot is not None:
            self.show(self._snapshot)

    def show(self, snapshot: Snapshot) -> None:
        from dspy_top.model.tree import flatten  # imported with the first snapshot, after the first frame

        self._snapshot = snapshot
        keep = None
        if self.filter_query.text.strip():
            # A module stays when its path matches, or when a call it made matched (by its prompt or response).
            made = {call.path for call in snapshot.calls} if self.filter_query.words else set()
            keep = lambda path: self.filter_query.matches_module(path) or path in made  # noqa: E731
        self._rows = flatten(
            snapshot.modules,
            collapsed=self.collapsed,
            sort=self.sort_key,
            descending=self.descending,
            tree=self.tree_mode,
            keep=keep,
        )
        total_cost = snapshot.totals.cost_usd
        columns = self.table_columns
        rows = []
        for row in self._rows:
            rows.append((row.node.path, [self._cell(column.key, row, total_cost) for column in columns]))
        self.sync(rows)
        self.set_title(self._title(snapshot))

    def _title(self, snapshot: Snapshot) -> str:
        mode = "tree" if self.tree_mode else "flat"
        order = f"by {SORT_NAMES.get(self.sort_key, self.sort_key)} {'▼' if self.descending else '▲'}"
        extra = f" · filter {self.filter_query.text!r}" if self.filter_query.text.strip() else ""
        return f"Modules ({mode}, {order}{extra})"

    def _module_cell(self, row: ModuleRow, width: int) -> Text:
        """Tree guide, name and class in `width` cells: the class goes first, then the name is cut in the middle."""
        node = row.node
        text = Text(no_wrap=True, overflow="ellipsis")
        guide = ""
        if self.tree_mode:
            guide = row.guide + (" " if row.depth else "")
            text.append(guide, style="dim" if row.depth else "bold")
        name = inert(node.name)
        kind = f"  {inert(node.class_name)}" if node.class_name and node.class_name != node.name else ""
        room = width - len(guide)
        if len(name) + len(kind) > room:
            kind = ""
        text.append(fmt.middle(name, room), style="bold" if row.depth == 0 and self.tree_mode else "")
        text.append(kind, style="dim")
        return text

    def _cell(self, key: str, row: ModuleRow, total_cost: float):
        node = row.node
        c = node.counters
        if key == "module":
            return self._module_cell(row, self.table_columns[0].width)
        if key == "state":
            return Text("active", style="green") if node.active else Text("idle", style="dim")
        if key == "calls":
            return fmt.count(c.calls)
        if key == "in_flight":
            return Text(str(c.in_flight), style="bold yellow" if c.in_flight else "dim")
        if key == "prompt_tokens":
            return fmt.token_count(c, c.prompt_tokens)
        if key == "completion_tokens":
            return fmt.token_count(c, c.completion_tokens)
        if key == "tokens_per_sec":
            return fmt.rate(node.tokens_per_sec)
        if key == "cost":
            return Text(fmt.cost(c), style="yellow" if c.unpriced_calls else "")
        if key == "share":
            if c.unpriced_calls and not c.cost_usd:
                return Text("?", style="yellow")  # its cost is unknown: so is its share, never 0%
            return f"{100 * c.cost_usd / total_cost:.0f}%" if total_cost > 0 else "-"
        if key == "p50":
            return fmt.seconds(c.p50)
        if key == "p95":
            return fmt.seconds(c.p95)
        if key == "errors":
            return Text(fmt.compact(c.errors), style="bold red" if c.errors else "dim")
        if key == "cache_hits":
            return fmt.compact(c.cache_hits)
        if key == "saved":
            return Text(fmt.dollars(c.cost_saved_usd), style="cyan") if c.cost_saved_usd else Text("-", style="dim")
        return ""
