"""The history pane: every call the viewer holds, one row each, oldest at the top, the newest at the bottom.

A line-API view (Textual's `ScrollView`) over the snapshot's calls rather than a DataTable:
it holds up to 10,000 calls (`--history`), and only the rows on screen are ever drawn, so a
busy job costs a refresh the same whether the history holds 200 calls or 10,000 (a DataTable
would add and drop thousands of rows a second). Following (class `-follow`) keeps the cursor
on the newest call; otherwise the cursor and the view stay on the same calls (by key) however
many arrive, and the title counts the new ones below. Up, PageUp, Home and a wheel scroll up
stop following; End and `f` follow again. Enter (or a click on the cursor row) posts `Chosen`
with the call itself, so what opens is what was under the cursor.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from dspy_top.viewer import format as fmt
from dspy_top.viewer.components.keyed_table import GAP, SCROLLBAR, Column, fit_cell
from dspy_top.viewer.terminal import inert

if TYPE_CHECKING:
    from dspy_top.model import CallSummary, Snapshot

ROW_CACHE = 400  # rendered rows kept (a screenful many times over)


def call_key(call: CallSummary) -> str:
    return f"{call.process}|{call.id}"


def split_key(key: str) -> tuple[str, int]:
    process, _, call_id = key.rpartition("|")
    return process, int(call_id)


def marks(call: CallSummary) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    if call.cache_hit:
        text.append("cache", style="cyan")
        if call.cost_saved_usd:
            text.append(f" saved {fmt.dollars(call.cost_saved_usd)}", style="cyan")
    if call.error:
        text.append(f"{' ' if text else ''}ERR {inert(call.error)}", style="bold red")
    if call.retries:
        text.append(f"{' ' if text else ''}retry {call.retries}", style="yellow")
    return text


class HistoryTable(ScrollView, can_focus=True):
    """Rows from `Snapshot.calls`; `follow` (class `-follow`) keeps the cursor on the newest call."""

    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "first", "Oldest", show=False),
        Binding("end", "end_follow", "Newest", show=False),
        Binding("enter", "choose", "Inspect", show=False),
    ]

    COMPONENT_CLASSES = {"history--header", "history--cursor", "history--cursor-blurred"}

    DEFAULT_CSS = """
    HistoryTable { overflow-x: hidden; }
    HistoryTable > .history--header { text-style: bold; }
    HistoryTable > .history--cursor { background: $block-cursor-background; color: $block-cursor-foreground; }
    HistoryTable > .history--cursor-blurred { background: $block-cursor-blurred-background; }
    """

    @dataclass
    class Chosen(Message):
        """Enter on a call (or a click on the cursor row): inspect it."""

        call: CallSummary

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.follow = True
        self.add_class("-follow")
        self.narrow = False
        self.multi = False
        self.columns: tuple[Column, ...] = ()
        self.calls: tuple[CallSummary, ...] = ()
        self.cursor = -1  # index into `calls`; -1: none
        self.held = 0
        self._index: dict[tuple[str, int], int] | None = None  # key -> index, built when needed
        self._newest_when_paused: tuple[str, int] | None = None  # the newest call when following stopped
        self._rows: dict[tuple, Strip] = {}
        self._header: Strip | None = None
        self._title = ""
        self.note: str | None = None

    # --- layout -------------------------------------------------------------------

    def layout_for(self, width: int, narrow: bool, multi: bool) -> None:
        self.narrow, self.multi = narrow, multi
        if narrow:
            fixed = [
                Column("time", "TIME", 8, right=False),
                Column("module", "MODULE", 0, right=False),
                Column("tokens", "IN→OUT", 11),
                Column("cost", "COST", fmt.DOLLARS_WIDTH),
                Column("latency", "LAT", 6),
                Column("marks", "MARKS", 10, right=False),
            ]
        else:
            fixed = [Column("time", "TIME", 12, right=False)]
            if multi:
                fixed.append(Column("pid", "PID", 7))
            fixed += [
                Column("module", "MODULE", 0, right=False),
                Column("model", "MODEL", 20, right=False),
                Column("tokens", "IN→OUT", 11),
                Column("cost", "COST", fmt.DOLLARS_WIDTH),
                Column("latency", "LAT", 6),
                Column("marks", "MARKS", 22, right=False),
            ]
        used = fixed[0].width + sum(c.width + GAP for c in fixed[1:]) + SCROLLBAR
        module = max(14, width - used)
        columns = tuple(Column(c.key, c.label, module, right=False) if c.key == "module" else c for c in fixed)
        if columns != self.columns:
            self.columns = columns
            self._rows.clear()
            self._header = None
            self._update_virtual_size()
            self.refresh()

    @property
    def table_columns(self) -> tuple[Column, ...]:
        return self.columns

    def _update_virtual_size(self) -> None:
        width = sum(c.width + (GAP if i else 0) for i, c in enumerate(self.columns))
        self.virtual_size = Size(width, len(self.calls) + 1)  # the header's line, then a line per call

    # --- what is shown ----------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self.calls)

    @property
    def cursor_row(self) -> int:
        return self.cursor

    @property
    def cursor_key(self) -> str | None:
        call = self.call_at_cursor()
        return call_key(call) if call is not None else None

    @property
    def keys(self) -> list[str]:
        return [call_key(call) for call in self.calls]

    def calls_in_view(self) -> tuple[CallSummary, ...]:
        """The calls of the rows on screen now."""
        top = int(self.scroll_y)
        return self.calls[top : top + max(0, self.size.height - 1)]

    def call_at_cursor(self) -> CallSummary | None:
        return self.calls[self.cursor] if 0 <= self.cursor < len(self.calls) else None

    def show(self, snapshot: Snapshot, note: str | None = None) -> None:
        """The snapshot's calls: following, the newest is under the cursor; otherwise nothing moves.
        `note` joins the title (how far a search of prompts and responses has got)."""
        calls = snapshot.calls
        self.held = snapshot.history_size
        self.note = note
        if calls is self.calls:
            self._set_title()
            return
        anchor = self.call_at_cursor()
        top = self._call_at_top()
        self.calls = calls
        self._index = None
        self._rows.clear() if len(self._rows) > ROW_CACHE else None
        self._update_virtual_size()
        if self.follow or anchor is None:
            self.cursor = len(calls) - 1
            self._scroll_to_end()
        else:
            self.cursor = self._find(anchor, fallback=0)
            if top is not None:
                self.scroll_to(y=self._find(top, fallback=0), animate=False, immediate=True)
            self._keep_cursor_in_view()
        self._set_title()
        self.refresh()

    def reset_rows(self) -> None:
        """Other calls (a filter or focus change): the next snapshot starts afresh, following or not."""
        self.calls = ()
        self.cursor = -1
        self._index = None
        self._update_virtual_size()

    def _find(self, call: CallSummary, fallback: int) -> int:
        if self._index is None:
            self._index = {(c[0], c[2]): i for i, c in enumerate(self.calls)}
        return self._index.get((call[0], call[2]), min(fallback, len(self.calls) - 1))

    def _call_at_top(self) -> CallSummary | None:
        index = int(self.scroll_y)
        return self.calls[index] if 0 <= index < len(self.calls) else None

    def _set_title(self) -> None:
        count = len(self.calls)
        shown = (
            f"{count:,} call{'s' if count != 1 else ''}" if count == self.held else f"{count:,} of {self.held:,} held"
        )
        if self.follow:
            title = f"History (following · {shown} · newest at the bottom)"
        else:
            newest = self._newest_when_paused
            index = self._find_key(newest)
            fresh = count - 1 - index if index is not None else count
            title = f"History (paused scrolling · {fresh:,} new below · End or f follows · {shown})"
        if self.note:
            title = f"{title[:-1]} · {self.note})"
        if self.size.width > 4:  # whole parts, never `1,178 ca…`
            title = fmt.fit_title(title, self.size.width - 2)
        if title != self._title:
            self._title = title
            self.border_title = Text(inert(title))

    def _find_key(self, key: tuple[str, int] | None) -> int | None:
        if key is None:
            return None
        if self._index is None:
            self._index = {(c[0], c[2]): i for i, c in enumerate(self.calls)}
        return self._index.get(key)

    # --- following and moving ------------------------------------------------------------

    def set_follow(self, follow: bool) -> None:
        if follow == self.follow and not follow:
            return
        self.follow = follow
        self.set_class(follow, "-follow")
        if follow:
            self._newest_when_paused = None
            if self.calls:
                self.cursor = len(self.calls) - 1
                self._scroll_to_end()
        elif self.calls:
            newest = self.calls[-1]
            self._newest_when_paused = (newest[0], newest[2])
        self._set_title()
        self.refresh()

    def _scroll_to_end(self) -> None:
        self.scroll_to(y=max(0, len(self.calls) + 1 - self.size.height), animate=False, immediate=True)

    def _keep_cursor_in_view(self) -> None:
        rows = max(1, self.size.height - 1)
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + rows:
            self.scroll_to(y=self.cursor - rows + 1, animate=False, immediate=True)

    def move_cursor(self, row: int) -> None:
        if not self.calls:
            return
        self.cursor = max(0, min(len(self.calls) - 1, row))
        self._keep_cursor_in_view()
        self.refresh()

    def action_cursor(self, step: int) -> None:
        if step < 0:
            self.set_follow(False)
        self.move_cursor(self.cursor + step)

    def action_page(self, step: int) -> None:
        if step < 0:
            self.set_follow(False)
        self.move_cursor(self.cursor + step * max(1, self.size.height - 2))

    def action_first(self) -> None:
        self.set_follow(False)
        self.move_cursor(0)

    def action_end_follow(self) -> None:
        self.set_follow(True)

    def action_choose(self) -> None:
        call = self.call_at_cursor()
        if call is not None:
            self.post_message(self.Chosen(call))

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.set_follow(False)

    def on_click(self, event: events.Click) -> None:
        row = int(self.scroll_y) + event.y - 1
        if event.y < 1 or not 0 <= row < len(self.calls):
            return
        if row == self.cursor:
            self.action_choose()
            return
        self.set_follow(False)
        self.move_cursor(row)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def on_resize(self) -> None:
        if self.follow:
            self._scroll_to_end()
        self._set_title()

    # --- drawing --------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            if self._header is None:
                style = self.get_component_rich_style("history--header")
                self._header = self._strip([c.label for c in self.columns], style, width, selected=True)
            return self._header
        index = int(self.scroll_y) + y - 1
        if not 0 <= index < len(self.calls):
            return Strip.blank(width, self.rich_style)
        call = self.calls[index]
        selected = index == self.cursor
        key = (call[0], call[2], selected, selected and self.has_focus, width)
        strip = self._rows.get(key)
        if strip is None:
            if selected:
                style = self.get_component_rich_style(
                    "history--cursor" if self.has_focus else "history--cursor-blurred"
                )
            else:
                style = self.rich_style
            strip = self._rows[key] = self._strip(self._cells(call), style, width, selected)
        return strip

    def _strip(self, cells: Sequence[str | Text], style: Style, width: int, selected: bool = False) -> Strip:
        line = Text(no_wrap=True, overflow="crop", end="")
        for index, (column, cell) in enumerate(zip(self.columns, cells)):
            text = fit_cell(index, column, cell)
            text.align("right" if column.right else "left", column.width + (GAP if index else 0))
            line.append_text(text)
        line.truncate(width, pad=True)
        segments = line.render(self.app.console)
        if selected:  # the cursor's colours over the cells' own
            segments = Segment.apply_style(segments, style=self.rich_style, post_style=style)
        else:
            segments = Segment.apply_style(segments, style=style)
        return Strip(list(segments), width)

    def _cells(self, call: CallSummary) -> list:
        cost = Text(fmt.call_cost(call.cost_usd), style="yellow" if call.cost_usd is None else "")
        tokens = f"{fmt.tokens(call.prompt_tokens)}→{fmt.tokens(call.completion_tokens)}" if call.usage_known else "?"
        cells: list = [fmt.clock(call.end, millis=not self.narrow)]
        if self.multi and not self.narrow:
            cells.append(str(call.pid))
        module = next(c for c in self.columns if c.key == "module")
        cells.append(Text(fmt.middle(inert(call.path), module.width)))
        if not self.narrow:
            cells.append(Text(fmt.middle(inert(call.model), 20), style="dim"))
        cells += [tokens, cost, fmt.seconds(call.latency), marks(call)]
        return cells
