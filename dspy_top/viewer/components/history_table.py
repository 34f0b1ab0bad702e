"""The history pane: one row per LM call, oldest at the top; following keeps the newest in view."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding

from dspy_top.model import CallSummary, Snapshot
from dspy_top.viewer import format as fmt
from dspy_top.viewer.terminal import inert
from dspy_top.viewer.components.keyed_table import Column, KeyedTable


def call_key(call: CallSummary) -> str:
    return f"{call.process}|{call.id}"


def split_key(key: str) -> tuple[str, int]:
    process, _, call_id = key.rpartition("|")
    return process, int(call_id)


def marks(call: CallSummary) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    if call.cache_hit:
        text.append(" cache", style="cyan")
        if call.cost_saved_usd:
            text.append(f" saved {fmt.dollars(call.cost_saved_usd)}", style="cyan")
    if call.error:
        text.append(f" ERR {inert(call.error)}", style="bold red")
    if call.retries:
        text.append(f" retry {call.retries}", style="yellow")
    return text


class HistoryTable(KeyedTable):
    """Rows from `Snapshot.calls`; `follow` (class `-follow`) keeps the cursor on the newest call."""

    BINDINGS = [
        Binding("up", "cursor_up_unfollow", "Up", show=False),
        Binding("pageup", "page_up_unfollow", "Page up", show=False),
        Binding("home", "home_unfollow", "First", show=False),
        Binding("end", "end_follow", "Newest", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(cell_padding=0, **kwargs)
        self.follow = True
        self.add_class("-follow")
        self.narrow = False
        self.multi = False
        self._calls: dict[str, CallSummary] = {}

    def layout_for(self, width: int, narrow: bool, multi: bool) -> None:
        self.narrow, self.multi = narrow, multi
        if narrow:
            fixed = [Column("time", "TIME", 8, right=False), Column("module", " MODULE", 0, right=False),
                     Column("tokens", "IN→OUT", 12), Column("cost", "COST", 10), Column("latency", "LAT", 7),
                     Column("marks", " MARKS", 12, right=False)]
        else:
            fixed = [Column("time", "TIME", 12, right=False)]
            if multi:
                fixed.append(Column("pid", "PID", 8))
            fixed += [Column("module", " MODULE", 0, right=False), Column("model", " MODEL", 20, right=False),
                      Column("tokens", "IN→OUT", 14), Column("cost", "COST", 10), Column("latency", "LAT", 8),
                      Column("marks", " MARKS", 24, right=False)]
        module = max(14, width - sum(c.width for c in fixed) - 2)
        self.set_columns([Column(c.key, c.label, module, right=False) if c.key == "module" else c for c in fixed])

    # --- following -------------------------------------------------------------------

    def set_follow(self, follow: bool) -> None:
        self.follow = follow
        self.set_class(follow, "-follow")
        if follow and self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def action_cursor_up_unfollow(self) -> None:
        self.set_follow(False)
        self.action_cursor_up()

    def action_page_up_unfollow(self) -> None:
        self.set_follow(False)
        self.action_page_up()

    def action_home_unfollow(self) -> None:
        self.set_follow(False)
        self.action_scroll_home()

    def action_end_follow(self) -> None:
        self.set_follow(True)

    # --- rendering --------------------------------------------------------------------

    def call_at_cursor(self) -> CallSummary | None:
        key = self.cursor_key
        return self._calls.get(key) if key else None

    def show(self, snapshot: Snapshot) -> None:
        rows = []
        calls: dict[str, CallSummary] = {}
        for call in snapshot.calls:
            key = call_key(call)
            calls[key] = call
            rows.append((key, self._row_cells(call)))
        self._calls = calls
        self.sync(rows)
        if self.follow and self.row_count and (self.cursor_row != self.row_count - 1 or self.scroll_y < self.max_scroll_y):
            # Scrolls once the new rows have their size (DataTable defers it to after a refresh).
            self.move_cursor(row=self.row_count - 1)
        state = "following" if self.follow else "paused scrolling"
        shown = len(rows)
        held = snapshot.history_size
        self.set_title(f"History ({state}; {shown:,} shown of {held:,} held)")

    def _row_cells(self, call: CallSummary) -> list:
        cost = Text(fmt.call_cost(call.cost_usd), style="yellow" if call.cost_usd is None else "")
        tokens = (f"{fmt.tokens(call.prompt_tokens)}→{fmt.tokens(call.completion_tokens)}" if call.usage_known
                  else "?")
        cells: list = [fmt.clock(call.end, millis=not self.narrow)]
        if self.multi and not self.narrow:
            cells.append(str(call.pid))
        cells.append(Text(f" {inert(call.path)}", no_wrap=True, overflow="ellipsis"))
        if not self.narrow:
            cells.append(Text(f" {inert(call.model)}", no_wrap=True, overflow="ellipsis", style="dim"))
        cells += [tokens, cost, fmt.seconds(call.latency), marks(call)]
        return cells
