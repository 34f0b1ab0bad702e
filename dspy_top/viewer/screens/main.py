"""The main screen: modules, models and processes above the shared panes, and their keys.

The panes are stacked, each as tall as its rows: the models and processes panes take theirs (up
to 8 rows each), the modules what their rows need of what is left once the history has its share
(view.py), and the history the rest. Modes are classes on the screen: `-narrow` (under 100 columns the models and
processes panes step aside), `-show-bottom` / `-hide-bottom` (`m`, `p`), plus the shared ones
(see view.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual import on
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable

from dspy_top.viewer.attach_offers import KEY_PREFIX
from dspy_top.viewer.components.empty_state import EmptyState
from dspy_top.viewer.components.model_table import ModelTable
from dspy_top.viewer.components.module_table import ModuleTable
from dspy_top.viewer.components.process_table import ProcessTable
from dspy_top.viewer.screens.view import (
    ALL_PROCESSES,
    DELAY,
    FILTER,
    FOLLOW,
    HELP,
    LEAVE,
    LOG,
    PAUSE,
    QUIT,
    REVERSE,
    SORT_BACK,
    SORT_ON,
    STOP,
    ZOOM,
    FleetScreen,
    set_height,
)

if TYPE_CHECKING:
    from dspy_top.model import Snapshot

BOTTOM_MOST = 8  # rows the models or the processes pane takes at most (app.tcss)
MODULES_LEAST = 4  # rows the modules pane keeps however little room there is: its title, header and two rows
SORT_BINDINGS = {
    "N": "module",
    "C": "calls",
    "I": "in_flight",
    "T": "tokens_per_sec",
    "dollar_sign": "cost",
    "L": "p95",
    "E": "errors",
    "H": "cache_hits",
}


class MainScreen(FleetScreen):
    """Where the viewer opens: the program's modules, the models, the processes, the calls."""

    BINDINGS = [
        QUIT,
        HELP,
        PAUSE,
        FILTER,
        Binding("o", "app.optimizers", "Optimizer"),
        SORT_BACK,
        SORT_ON,
        Binding("t,f5", "tree", "Tree", key_display="t"),
        FOLLOW,
        Binding("p", "processes", "Procs"),
        Binding("m", "bottom", "Models"),
        ZOOM,
        ALL_PROCESSES,
        Binding("x,delete", "dismiss", "Dismiss ended", show=False),
        Binding("A", "attach", "Attach", show=False),
        STOP,
        LOG,
        REVERSE,
        DELAY,
        LEAVE,
        Binding("plus", "expand_all", "Expand all", show=False),
        Binding("minus", "collapse_all", "Collapse all", show=False),
        *(Binding(key, f"sort('{column}')", f"Sort by {column}", show=False) for key, column in SORT_BINDINGS.items()),
    ]

    def compose_panes(self) -> Iterable[Widget]:
        yield ModuleTable(id="modules")
        yield ModelTable(id="models", classes="bottom")
        yield ProcessTable(id="processes", classes="bottom")

    def first_focus(self) -> Widget:
        return self.query_one(ModuleTable)

    def layout_panes(self, width: int, narrow: bool) -> None:
        self.query_one(ModuleTable).layout_for(width, narrow)
        self.query_one(ModelTable).layout_for(width, narrow)
        self.query_one(ProcessTable).layout_for(width)

    def fit_panes(self, room: int) -> None:
        bottom = not self.has_class("-hide-bottom") and (
            not self.has_class("-narrow") or self.has_class("-show-bottom")
        )
        if self.has_class("-empty") and self.has_class("-offered") and self.snapshot is not None:
            # Nothing instrumented yet, jobs to attach to: the process list alone, under what the screen says.
            set_height(self.query_one(ProcessTable), min(BOTTOM_MOST, 2 + len(self.app.offers())))
            return
        if bottom and self.snapshot is not None:
            # Each takes its title, its header and its rows, up to 8 (app.tcss). Set here rather than
            # left to `height: auto`: an auto height measured while a table was still empty stayed so.
            models = min(BOTTOM_MOST, 2 + len(self.snapshot.models))
            processes = min(BOTTOM_MOST, 2 + len(self.snapshot.processes) + len(self.app.offers()))
            set_height(self.query_one(ModelTable), models)
            set_height(self.query_one(ProcessTable), processes)
            room -= models + processes
        set_height(self.query_one(ModuleTable), max(MODULES_LEAST, room), most=True)

    def show_panes(self, snapshot: Snapshot) -> None:
        self.query_one(ModuleTable).show(snapshot)
        self.query_one(ModelTable).show(snapshot)
        self._show_processes(snapshot)

    def show_offers(self) -> None:
        """The offered processes changed (or an attach started or ended): the process list alone is redrawn."""
        if self.is_mounted and self.snapshot is not None:
            self._show_processes(self.snapshot)
            self.fit_heights()

    def _show_processes(self, snapshot: Snapshot) -> None:
        offers = self.app.offers()
        table = self.query_one(ProcessTable)
        table.show(snapshot, offers)
        offered = bool(offers) and not snapshot.processes
        if offered != self.has_class("-offered"):
            self.set_class(offered, "-offered")
            self.query_one(EmptyState).show_offered(offered)
            if offered:
                table.focus()  # the one pane on screen: ↑/↓ and A work at once

    def query_changed(self) -> None:
        self.query_one(ModuleTable).set_query(self.app.call_query)

    def process_at_cursor(self) -> str | None:
        table = self.focused
        return table.cursor_key if isinstance(table, ProcessTable) else None

    # --- keys -----------------------------------------------------------------------------

    def action_sort_step(self, step: int) -> None:
        self.query_one(ModuleTable).step_sort(step)

    def action_sort(self, column: str) -> None:
        self.query_one(ModuleTable).set_sort(column)

    def action_reverse(self) -> None:
        self.query_one(ModuleTable).reverse()

    def action_tree(self) -> None:
        self.query_one(ModuleTable).toggle_tree()

    def action_expand_all(self) -> None:
        self.query_one(ModuleTable).expand_all()

    def action_collapse_all(self) -> None:
        self.query_one(ModuleTable).collapse_all()

    def action_bottom(self) -> None:
        self.toggle_class("-show-bottom" if self.has_class("-narrow") else "-hide-bottom")
        self.fit_heights()

    def action_show_bottom(self) -> None:
        """The models and processes panes in view, whatever the width."""
        self.remove_class("-hide-bottom")
        if self.has_class("-narrow"):
            self.add_class("-show-bottom")
        self.fit_heights()

    def action_processes(self) -> None:
        self.action_show_bottom()
        self.query_one(ProcessTable).focus()

    def action_dismiss(self) -> None:
        """`x`: dismiss the process under the process list's cursor, after a y/n."""
        key = self.query_one(ProcessTable).cursor_key
        if key is not None and key.startswith(KEY_PREFIX):
            self.notify(
                "that process is not attached: nothing to dismiss (A attaches it)", severity="warning", timeout=4
            )
        elif key is not None:
            self.app.ask_dismiss(key)
        else:
            self.notify("x dismisses an ended process: nothing is listed", severity="warning", timeout=4)

    def action_attach(self) -> None:
        """`A`: attach to the offered process under the process list's cursor, after a y/n."""
        table = self.query_one(ProcessTable)
        self.app.ask_attach(table.cursor_key if table.display else None)

    @on(DataTable.RowSelected, "#modules")
    def toggle_module(self, event: DataTable.RowSelected) -> None:
        self.query_one(ModuleTable).toggle_row(event.row_key.value)

    def leave_screen(self) -> None:
        pass  # the main screen: nothing to go back to

    @on(DataTable.RowSelected, "#processes")
    def focus_process(self, event: DataTable.RowSelected) -> None:
        key = event.row_key.value
        if key is not None and key.startswith(KEY_PREFIX):
            self.notify("that process is not attached yet: A attaches it, then enter focuses it", timeout=4)
            return
        self.app.set_focus_process(key)

    @on(DataTable.RowHighlighted, "#processes")
    def process_highlighted(self) -> None:
        self.app.update_stop_binding()

    @on(DataTable.HeaderSelected, "#modules")
    def sort_by_header(self, event: DataTable.HeaderSelected) -> None:
        self.query_one(ModuleTable).sort_by_header(event.column_key.value)
