"""The live viewer: a Textual app that renders `Fleet.snapshot()` on a timer (never per event).

The collector's thread folds messages into the fleet; the app wakes every `delay`
seconds, takes one snapshot under the fleet's lock and updates its widgets, diffed by
key. Payload answers arrive as messages. Styling lives in app.tcss; modes are CSS
classes on the screen (`-paused`, `-empty`, `-narrow`, `-show-bottom`, `-job`, `-optimizers`).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal, Vertical
from textual.widgets import DataTable, Footer, Input

from dspy_top.model import CallQuery, CallSummary, Fleet, OptimizerRun, ProcessRow, Snapshot
from dspy_top.model.budget import BudgetAlarm
from dspy_top.model.payloads import PayloadAnswer
from dspy_top.pricing import Price
from dspy_top.viewer.collector import Collector
from dspy_top.viewer.components.empty_state import EmptyState
from dspy_top.viewer.components.filter_bar import FilterBar
from dspy_top.viewer.components.header import Header
from dspy_top.viewer.components.history_table import HistoryTable
from dspy_top.viewer.components.job_log import JobLog
from dspy_top.viewer.components.model_table import ModelTable
from dspy_top.viewer.components.module_table import ModuleTable
from dspy_top.viewer.components.optimizer_summary import OptimizerSummary
from dspy_top.viewer.components.optimizer_table import OptimizerTable
from dspy_top.viewer.components.process_table import ProcessTable
from dspy_top.viewer.components.status_line import StatusLine
from dspy_top.viewer.components.trial_table import TrialTable
from dspy_top.viewer.job import Job
from dspy_top.viewer.messages import Notice, PayloadArrived
from dspy_top.viewer.screens.confirm_stop import ConfirmStop
from dspy_top.viewer.screens.help import HelpScreen
from dspy_top.viewer.screens.inspect import InspectScreen

NARROW_BELOW = 100  # columns: below this the models/processes panes hide behind `m` and `p`
HISTORY_ROWS = 200  # newest calls the history pane shows (the fleet holds 10,000; filters search them all)
PAYLOAD_CACHE = 200
QUIET_REDRAW = 5.0  # seconds: with no new data, the tables are redrawn this often (rates decay)
SORT_BINDINGS = {"N": "module", "C": "calls", "I": "in_flight", "T": "tokens_per_sec", "dollar_sign": "cost",
                 "L": "p95", "E": "errors", "H": "cache_hits"}


class TopApp(App):
    """`dspy-top`: the top-style view of every attached DSPy process."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere find it too
    TITLE = "dspy-top"
    ENABLE_COMMAND_PALETTE = False

    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "interrupt", "Quit", show=False, priority=True),
        Binding("space", "pause", "Pause"),
        Binding("slash", "filter", "Filter"),
        Binding("o", "optimizers", "Optimizer"),
        Binding("less_than_sign", "sort_step(-1)", "Sort ←", key_display="<"),
        Binding("greater_than_sign", "sort_step(1)", "Sort →", key_display=">"),
        Binding("t", "tree", "Tree"),
        Binding("f", "follow", "Follow"),
        Binding("p", "processes", "Procs"),
        Binding("m", "bottom", "Models"),
        Binding("question_mark,h", "help", "Help", key_display="?"),
        Binding("a", "focus_all", "All processes", show=False),
        Binding("x,delete", "dismiss", "Dismiss ended", show=False),
        Binding("k", "stop_job", "Stop job"),
        Binding("l", "toggle_log", "Log", show=False),
        Binding("R", "reverse", "Reverse sort", show=False),
        Binding("plus", "expand_all", "Expand all", show=False),
        Binding("minus", "collapse_all", "Collapse all", show=False),
        *(Binding(key, f"sort('{column}')", f"Sort by {column}", show=False) for key, column in SORT_BINDINGS.items()),
    ]

    def __init__(
        self,
        fleet: Fleet,
        collector: Collector | None = None,
        *,
        delay: float = 1.0,
        job: Job | None = None,
        runtime_dir: Path | None = None,
        history_rows: int = HISTORY_ROWS,
        start_collector: bool = True,
    ) -> None:
        super().__init__()
        self.fleet = fleet
        self.collector = collector
        self.delay = delay
        self.job = job
        self.runtime_dir = runtime_dir or (collector.runtime_dir if collector else Path("."))
        self.history_rows = history_rows
        self.start_collector = start_collector
        self.paused = False
        self.focus_key: str | None = None
        self.call_query = CallQuery("")
        self.snapshot: Snapshot | None = None
        self.frames = 0
        self.first_frame_at: float | None = None
        self._payloads: OrderedDict[tuple[str, int], PayloadAnswer] = OrderedDict()
        self._interrupts = 0
        self._job_done = False
        self._layout_key: tuple | None = None
        self._version = -1
        self._full_at = 0.0
        self.budget_alarm = BudgetAlarm()
        self._alerts_seen: set[tuple[str, str, str, str]] = set()
        self._stop_target_key: str | None = None
        self._stop_requested: set[str] = set()
        if collector is not None:
            collector.on_payload = self._payload_from_thread
            collector.on_notice = self._notice_from_thread

    # --- building -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(id="header")
        with Container(id="main"):
            yield EmptyState(self.runtime_dir, id="empty")
            yield ModuleTable(id="modules")
            with Horizontal(id="bottom"):
                yield ModelTable(id="models")
                yield ProcessTable(id="processes")
            with Vertical(id="optimizer-view"):
                yield OptimizerTable(id="optimizer-runs")
                yield OptimizerSummary(id="optimizer-summary")
                yield TrialTable(id="trials")
            if self.job is not None:
                yield JobLog(id="joblog")
            yield HistoryTable(id="history")
        yield FilterBar(id="filter")
        yield StatusLine(id="status")
        yield Footer()

    def on_mount(self) -> None:
        if self.job is not None:
            self.screen.add_class("-job")
        if self.collector is not None and self.start_collector:
            self.collector.start()
        self._relayout(self.size.width)
        self.refresh_from_model()
        # A quick second look once the collector has attached, then the steady pace.
        self.set_timer(0.25, self.refresh_from_model)
        self.set_interval(self.delay, self.refresh_from_model)
        self.query_one(ModuleTable).focus()

    def on_unmount(self) -> None:
        if self.collector is not None:
            self.collector.stop()

    def on_resize(self, event) -> None:
        self._relayout(event.size.width)
        if self.snapshot is not None:
            self.apply(self.snapshot)

    def _relayout(self, width: int) -> None:
        narrow = width < NARROW_BELOW
        multi = self.snapshot is not None and len(self.snapshot.processes) > 1 and self.snapshot.focus is None
        key = (width, narrow, multi)
        if key == self._layout_key:
            return
        self._layout_key = key
        self.screen.set_class(narrow, "-narrow")
        self.query_one(ModuleTable).layout_for(width - 1, narrow)
        models = width * 9 // 20 if not narrow else width
        self.query_one(ModelTable).layout_for(models - 1)
        self.query_one(ProcessTable).layout_for((width - models if not narrow else width) - 1)
        self.query_one(HistoryTable).layout_for(width - 1, narrow, multi)
        self.query_one(OptimizerTable).layout_for(width - 1, narrow)
        self.query_one(TrialTable).layout_for(width - 1, narrow)

    # --- the refresh loop -------------------------------------------------------------

    def refresh_from_model(self) -> None:
        if not self.is_running:
            return  # shutting down: a timer that fired as the widgets went away
        self._follow_job()
        if self.paused and self.snapshot is not None:
            return
        with self.fleet.lock:
            version = self.fleet.version
            snapshot = self.fleet.snapshot(self.focus_key, self.call_query, self.history_rows)
        quiet = version == self._version and time.monotonic() - self._full_at < QUIET_REDRAW
        if quiet and self.snapshot is not None:
            # Nothing arrived: only the clock moved. Tables wait (rates decay on the next full redraw).
            self.snapshot = snapshot
            self.query_one(Header).show(snapshot, self.paused)
            return
        self._version = version
        self._full_at = time.monotonic()
        self.apply(snapshot)

    def apply(self, snapshot: Snapshot) -> None:
        previous = self.snapshot
        self.snapshot = snapshot
        if previous is None or len(previous.processes) != len(snapshot.processes) or previous.focus != snapshot.focus:
            self._relayout(self.size.width)
        self.screen.set_class(not snapshot.processes, "-empty")
        self.query_one(Header).show(snapshot, self.paused)
        self.query_one(ModuleTable).show(snapshot)
        self.query_one(ModelTable).show(snapshot)
        self.query_one(ProcessTable).show(snapshot)
        self.query_one(HistoryTable).show(snapshot)
        if self.screen.has_class("-optimizers"):
            self.show_optimizers(snapshot)
        self.query_one(StatusLine).show(snapshot, self.paused, self._job_note())
        self._money_alerts(snapshot)
        self._update_stop_binding()
        self.frames += 1
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()

    def _money_alerts(self, snapshot: Snapshot) -> None:
        """The viewer's budget at 80% and 100%, and each job's budget alerts: each said once."""
        for level in self.budget_alarm.crossed(snapshot.budget):
            self.notify(snapshot.budget.message(level), title="dspy-top budget",
                        severity="error" if level >= 100 else "warning", timeout=15)
        for job in snapshot.job_budgets:
            for alert in job.alerts:
                if alert.key in self._alerts_seen:
                    continue
                self._alerts_seen.add(alert.key)
                severity = "warning" if alert.level == "80" else "error"
                self.notify(alert.message.removeprefix("dspy-top: "), title=f"pid {alert.pid} budget",
                            severity=severity, timeout=15)

    def _follow_job(self) -> None:
        job = self.job
        if job is None:
            return
        try:
            output = job.read_new_output()
        except Exception as exc:  # the log file went away: say so once
            output = f"\n[dspy-top: cannot read the job's output: {exc}]\n" if not self._job_done else ""
        log = self.query_one(JobLog)
        log.add_output(output)
        code = job.returncode()
        if code is not None and not self._job_done:
            self._job_done = True
            log.job_ended(code)
            self.screen.add_class("-job-ended")

    def _job_note(self) -> str | None:
        if self.job is None:
            return None
        code = self.job.returncode()
        if code is None:
            return f"job pid {self.job.pid} running · ctrl+c interrupts it"
        return f"job exited with code {code} · q quits"

    # --- payloads ---------------------------------------------------------------------

    def _payload_from_thread(self, answer: PayloadAnswer) -> None:
        self.post_message(PayloadArrived(answer))

    def fetch_payload(self, call: CallSummary) -> None:
        cached = self._payloads.get(call.key)
        if cached is not None:
            self._payloads.move_to_end(call.key)
            self.call_after_refresh(self._forward_answer, cached)
            return
        if self.collector is None:
            self.call_after_refresh(self._forward_answer, PayloadAnswer(
                call.process, call.id, None, "this viewer is not connected to the process"))
            return
        self.collector.request_payload(call.process, call.id)

    def forget_payload(self, call: CallSummary) -> None:
        self._payloads.pop(call.key, None)

    def _notice_from_thread(self, text: str) -> None:
        self.post_message(Notice(text))

    def on_notice(self, message: Notice) -> None:
        self.notify(message.text, severity="error", timeout=10)

    def on_payload_arrived(self, message: PayloadArrived) -> None:
        answer = message.answer
        if answer.payload is not None:
            self._payloads[(answer.process, answer.call_id)] = answer
            while len(self._payloads) > PAYLOAD_CACHE:
                self._payloads.popitem(last=False)
        self._forward_answer(answer)

    def _forward_answer(self, answer: PayloadAnswer) -> None:
        if isinstance(self.screen, InspectScreen):
            self.screen.show_answer(answer)

    # --- table events -------------------------------------------------------------------

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        table = event.data_table
        if isinstance(table, ModuleTable):
            table.toggle_row(event.row_key.value)
        elif isinstance(table, HistoryTable):
            self.inspect(table)
        elif isinstance(table, ProcessTable):
            self.set_focus_process(event.row_key.value)
        elif isinstance(table, OptimizerTable):
            run = table.selected()
            if isinstance(run, OptimizerRun):
                self.filter_history_to(run.pid, run.id)
        elif isinstance(table, TrialTable):
            trial = table.trial_at_cursor()
            if trial is not None:
                self.filter_history_to(trial.scope.pid, trial.id)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a module or trial table header sorts by that column (a second click reverses)."""
        table = event.data_table
        if isinstance(table, (ModuleTable, TrialTable)):
            column = next((c for c in table.table_columns if c.key == event.column_key.value), None)
            if column is not None and column.sort:
                table.set_sort(column.sort)

    def inspect(self, table: HistoryTable) -> None:
        call = table.call_at_cursor()
        if call is None or self.snapshot is None:
            return
        calls = list(self.snapshot.calls)
        index = next((i for i, c in enumerate(calls) if c.key == call.key), 0)
        with self.fleet.lock:
            chains = {path: module.chain for process in self.fleet.processes.values()
                      for path, module in process.modules.items()}
        self.push_screen(InspectScreen(calls, index, chains))

    def set_focus_process(self, key: str | None) -> None:
        self.focus_key = key
        self.query_one(HistoryTable).reset_rows()
        self.refresh_now()

    def refresh_now(self) -> None:
        with self.fleet.lock:
            snapshot = self.fleet.snapshot(self.focus_key, self.call_query, self.history_rows)
        self.apply(snapshot)

    # --- filter -------------------------------------------------------------------------

    def action_filter(self) -> None:
        bar = self.query_one(FilterBar)
        self.screen.add_class("-filtering")
        bar.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if not isinstance(event.input, FilterBar):
            return
        self.call_query = CallQuery(event.value.strip())
        if not self.call_query.text:
            self.screen.remove_class("-filtering")
        self.query_one(ModuleTable).set_query(self.call_query)
        history = self.query_one(HistoryTable)
        history.reset_rows()
        self.refresh_now()
        (self.query_one(TrialTable) if self.screen.has_class("-optimizers") else self.query_one(ModuleTable)).focus()

    def filter_history_to(self, pid: int, scope_id: str) -> None:
        """Enter on a trial or optimizer: the history pane shows its calls (enter again shows all)."""
        text = f"pid:{pid} scope:{scope_id}"
        if self.call_query.text == text:
            text = ""
        self.query_one(FilterBar).value = text
        self.call_query = CallQuery(text)
        self.screen.set_class(bool(text), "-filtering")
        self.query_one(ModuleTable).set_query(self.call_query)
        self.query_one(HistoryTable).reset_rows()
        self.refresh_now()

    # --- actions --------------------------------------------------------------------------

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.screen.set_class(self.paused, "-paused")
        if self.snapshot is not None:
            self.query_one(Header).show(self.snapshot, self.paused)
            self.query_one(StatusLine).show(self.snapshot, self.paused, self._job_note())
        if not self.paused:
            self.refresh_now()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_sort_step(self, step: int) -> None:
        if self.screen.has_class("-optimizers"):
            self.query_one(TrialTable).step_sort(step)
            return
        self.query_one(ModuleTable).step_sort(step)

    def action_sort(self, column: str) -> None:
        self.query_one(ModuleTable).set_sort(column)

    def action_reverse(self) -> None:
        if self.screen.has_class("-optimizers"):
            self.query_one(TrialTable).reverse()
            return
        self.query_one(ModuleTable).reverse()

    def action_tree(self) -> None:
        self.query_one(ModuleTable).toggle_tree()

    def action_expand_all(self) -> None:
        self.query_one(ModuleTable).expand_all()

    def action_collapse_all(self) -> None:
        self.query_one(ModuleTable).collapse_all()

    def action_follow(self) -> None:
        history = self.query_one(HistoryTable)
        history.set_follow(not history.follow)
        if self.snapshot is not None:
            history.show(self.snapshot)

    def action_optimizers(self) -> None:
        """`o`: the optimizer view (runs, trials, spend) in place of the module and model panes."""
        shown = not self.screen.has_class("-optimizers")
        self.screen.set_class(shown, "-optimizers")
        if shown:
            if self.snapshot is not None:
                self.show_optimizers(self.snapshot)
            self.query_one(OptimizerTable).focus()
        else:
            self.query_one(ModuleTable).focus()

    def show_optimizers(self, snapshot: Snapshot) -> None:
        runs = self.query_one(OptimizerTable)
        runs.show(snapshot)
        self._show_selected_run()

    def _show_selected_run(self) -> None:
        entry = self.query_one(OptimizerTable).selected()
        self.query_one(OptimizerSummary).show(entry, self.size.width - 1)
        self.query_one(TrialTable).show(entry if isinstance(entry, OptimizerRun) else None)

    def action_bottom(self) -> None:
        self.screen.toggle_class("-show-bottom" if self.screen.has_class("-narrow") else "-hide-bottom")

    def action_processes(self) -> None:
        screen = self.screen
        screen.remove_class("-hide-bottom")
        if screen.has_class("-narrow"):
            screen.add_class("-show-bottom")
        self.query_one(ProcessTable).focus()

    def action_focus_all(self) -> None:
        self.set_focus_process(None)

    def action_dismiss(self) -> None:
        table = self.query_one(ProcessTable)
        key = table.cursor_key
        if key is None:
            return
        dismissed = self.collector.dismiss(key) if self.collector is not None else self._dismiss_local(key)
        if dismissed:
            if self.focus_key == key:
                self.focus_key = None
            self.refresh_now()
        else:
            self.notify("only an ended or broken process can be dismissed", severity="warning")

    def _dismiss_local(self, key: str) -> bool:
        with self.fleet.lock:
            return self.fleet.dismiss(key)

    # --- stopping a job (k) ----------------------------------------------------------------

    def stop_target(self) -> ProcessRow | None:
        """The running process `k` would stop: the focused one, or the one under the process list's cursor."""
        snapshot = self.snapshot
        if snapshot is None:
            return None
        key = self.focus_key
        if key is None:
            table = self.focused
            if not isinstance(table, ProcessTable):
                return None
            key = table.cursor_key
        row = next((p for p in snapshot.processes if p.key == key), None)
        return row if row is not None and row.state == "running" else None

    def _update_stop_binding(self) -> None:
        if not self.screen_stack:
            return  # shutting down: a late table event
        if self.screen is not self.screen_stack[0]:
            # A modal is up; the footer is redrawn from check_action when it closes: look again then.
            self._stop_target_key = "(another screen)"
            return
        target = self.stop_target()
        key = target.key if target is not None else None
        if key != self._stop_target_key:
            self._stop_target_key = key
            self.refresh_bindings()

    def on_descendant_focus(self, event) -> None:
        self._update_stop_binding()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if isinstance(event.data_table, ProcessTable):
            self._update_stop_binding()
        elif isinstance(event.data_table, OptimizerTable) and self.screen.has_class("-optimizers"):
            self._show_selected_run()

    def action_stop_job(self) -> None:
        target = self.stop_target()
        if target is None:
            self.notify("focus a running process first (p, then enter)", severity="warning")
            return

        def answered(stop: bool | None) -> None:
            if stop:
                self.request_stop(target)

        self.push_screen(ConfirmStop(target.pid, target.command), answered)

    def request_stop(self, target: ProcessRow) -> None:
        if self.collector is None or not hasattr(self.collector, "request_stop"):
            self.notify("this viewer is not connected to the process", severity="error")
            return
        self._stop_requested.add(target.key)
        self.collector.request_stop(target.key, f"stop requested from the viewer (dspy-top pid {os.getpid()})")
        self.notify(f"asked pid {target.pid} to stop: its next LM call ends the run", timeout=8)

    def action_toggle_log(self) -> None:
        if self.job is not None:
            self.screen.toggle_class("-hide-log")

    def action_interrupt(self) -> None:
        """ctrl+c: with a running job, the first one interrupts the job, the second quits."""
        job = self.job
        if job is None or job.returncode() is not None or self._interrupts >= 1:
            self.exit()
            return
        self._interrupts += 1
        try:
            job.interrupt()
        except Exception as exc:
            self.notify(f"cannot interrupt the job: {exc}", severity="error")
            return
        self.notify("sent SIGINT to the job · ctrl+c again quits", timeout=4)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in ("pop_screen", "interrupt", "help", "pause") and self.screen is not self.screen_stack[0]:
            return False  # the main screen's keys stay out of the inspect and help screens
        if action == "toggle_log":
            return self.job is not None
        if action == "stop_job":
            return self.stop_target() is not None
        if action == "dismiss":
            return None if self.snapshot is None or not any(
                p.state not in ("running", "connecting") for p in self.snapshot.processes) else True
        return True


def run_viewer(
    *,
    pids: list[int] | None = None,
    sockets: list[Path] | None = None,
    delay: float = 1.0,
    job: Job | None = None,
    directory: Path | None = None,
    clock: Callable[[], float] = time.time,
    prices: dict[str, Price] | None = None,
    budget_usd: float | None = None,
) -> int:
    """Run the interactive viewer until the user quits; the return value is the exit status."""
    fleet = Fleet(clock, prices=prices, budget_usd=budget_usd)
    if job is not None:
        pids = [job.pid]
    collector = Collector(fleet, directory=directory, pids=pids, sockets=sockets)
    app = TopApp(fleet, collector, delay=delay, job=job)
    app.run()
    return 0
