"""`o`: the optimizer screen: runs, the selected run's summary and trials above the shared panes.

Each is as tall as its rows; the trials take what they need of what the history leaves (view.py).

Its own keys sort the trials (`<` `>` `R`, or a click on a header); enter on a run or a trial
filters the history to its LM calls (enter again shows all). `o` or escape goes back.
"""

from __future__ import annotations

from collections.abc import Iterable

from textual import on
from textual.binding import Binding
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import DataTable

from dspy_top.model import OptimizerRun, Snapshot
from dspy_top.viewer.components.optimizer_summary import OptimizerSummary
from dspy_top.viewer.components.optimizer_table import OptimizerTable
from dspy_top.viewer.components.trial_table import TrialTable
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

# Rows (wide, narrow) the runs table and the summary take at most: as app.tcss caps them.
RUNS_MOST = {False: 8, True: 4}
SUMMARY_MOST = {False: 4, True: 3}
TRIALS_LEAST = 4  # the trials' title, header and two rows, however little room there is


class OptimizersScreen(FleetScreen):
    """Every optimizer compile and plain evaluation, the selected one's trials, and the calls."""

    BINDINGS = [
        QUIT,
        HELP,
        PAUSE,
        FILTER,
        Binding("o", "app.optimizers", "Modules"),
        SORT_BACK,
        SORT_ON,
        FOLLOW,
        ZOOM,
        ALL_PROCESSES,
        STOP,
        LOG,
        REVERSE,
        DELAY,
        LEAVE,
        # The process list and the models pane live on the main screen: these keys go there.
        Binding("p", "main('processes')", "Procs", show=False),
        Binding("m", "main('show_bottom')", "Models", show=False),
    ]

    def compose_panes(self) -> Iterable[Widget]:
        with Vertical(id="optimizer-view"):
            yield OptimizerTable(id="optimizer-runs")
            yield OptimizerSummary(id="optimizer-summary")
            yield TrialTable(id="trials")

    def first_focus(self) -> Widget:
        return self.query_one(OptimizerTable)

    def layout_panes(self, width: int, narrow: bool) -> None:
        self.query_one(OptimizerTable).layout_for(width, narrow)
        self.query_one(TrialTable).layout_for(width, narrow)

    def fit_panes(self, room: int) -> None:
        """The runs and the summary as tall as their rows (app.tcss caps them), the trials their rows of the rest."""
        narrow = self.has_class("-narrow")
        runs = min(RUNS_MOST[narrow], 2 + self.query_one(OptimizerTable).row_count)
        summary = min(SUMMARY_MOST[narrow], self.query_one(OptimizerSummary).lines)
        trials = self.query_one(TrialTable)
        height = max(TRIALS_LEAST, min(2 + trials.row_count, room - runs - summary))
        set_height(trials, height)
        set_height(self.query_one("#optimizer-view"), runs + summary + height)

    def leave_screen(self) -> None:
        self.app.action_optimizers()  # escape with nothing else to leave: back to the main screen

    def show_panes(self, snapshot: Snapshot) -> None:
        self.query_one(OptimizerTable).show(snapshot)
        self._show_selected_run()

    def _show_selected_run(self) -> None:
        entry = self.query_one(OptimizerTable).selected()
        self.query_one(OptimizerSummary).show(entry, self.app.size.width - 1)
        self.query_one(TrialTable).show(entry if isinstance(entry, OptimizerRun) else None)
        self.fit_heights()  # another run: other trials, another summary

    # --- keys -----------------------------------------------------------------------------

    def action_sort_step(self, step: int) -> None:
        self.query_one(TrialTable).step_sort(step)

    def action_reverse(self) -> None:
        self.query_one(TrialTable).reverse()

    def action_main(self, action: str) -> None:
        """Back to the main screen, then its `action` there."""
        main = self.app.show_main()
        main.call_later(main.run_action, action)

    @on(DataTable.RowHighlighted, "#optimizer-runs")
    def run_highlighted(self) -> None:
        self._show_selected_run()

    def filter_history_to(self, pid: int, scope_id: str) -> None:
        """Enter on a trial or optimizer: the history shows its calls (enter again shows all)."""
        text = f"pid:{pid} scope:{scope_id}"
        self.app.set_query("" if self.app.call_query.text == text else text)

    @on(DataTable.RowSelected, "#optimizer-runs")
    def filter_to_run(self, event: DataTable.RowSelected) -> None:
        run = self.query_one(OptimizerTable).entry(event.row_key.value)  # the row enter was pressed on
        if isinstance(run, OptimizerRun):
            self.filter_history_to(run.pid, run.id)

    @on(DataTable.RowSelected, "#trials")
    def filter_to_trial(self, event: DataTable.RowSelected) -> None:
        trial = self.query_one(TrialTable).trial(event.row_key.value)  # by key: rows may have moved since
        if trial is not None:
            self.filter_history_to(trial.scope.pid, trial.id)

    @on(DataTable.HeaderSelected, "#trials")
    def sort_by_header(self, event: DataTable.HeaderSelected) -> None:
        self.query_one(TrialTable).sort_by_header(event.column_key.value)
