"""The live viewer: a Textual app that renders `Fleet.snapshot()` on a timer (never per event).

The collector's thread folds messages into the fleet; the app wakes every `delay`
seconds, takes one snapshot under the fleet's lock and updates its widgets, diffed by
key. Payload answers arrive as messages. Styling lives in app.tcss; modes are CSS
classes on the screen (`-paused`, `-empty`, `-narrow`, `-show-bottom`, `-job`).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container, Horizontal
from textual.widgets import DataTable, Footer, Input

from dspy_top.model import CallQuery, CallSummary, Fleet, Snapshot
from dspy_top.viewer.collector import Collector, PayloadAnswer
from dspy_top.viewer.components.empty_state import EmptyState
from dspy_top.viewer.components.filter_bar import FilterBar
from dspy_top.viewer.components.header import Header
from dspy_top.viewer.components.help_screen import HelpScreen
from dspy_top.viewer.components.history_table import HistoryTable
from dspy_top.viewer.components.inspect_screen import InspectScreen
from dspy_top.viewer.components.job_log import JobLog
from dspy_top.viewer.components.model_table import ModelTable
from dspy_top.viewer.components.module_table import ModuleTable
from dspy_top.viewer.components.process_table import ProcessTable
from dspy_top.viewer.components.status_line import StatusLine
from dspy_top.viewer.job import Job
from dspy_top.viewer.messages import PayloadArrived

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
        Binding("less_than_sign", "sort_step(-1)", "Sort ←", key_display="<"),
        Binding("greater_than_sign", "sort_step(1)", "Sort →", key_display=">"),
        Binding("t", "tree", "Tree"),
        Binding("f", "follow", "Follow"),
        Binding("p", "processes", "Procs"),
        Binding("m", "bottom", "Models"),
        Binding("question_mark,h", "help", "Help", key_display="?"),
        Binding("a", "focus_all", "All processes", show=False),
        Binding("x,delete", "dismiss", "Dismiss ended", show=False),
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
        if collector is not None:
            collector.on_payload = self._payload_from_thread

    # --- building -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(id="header")
        with Container(id="main"):
            yield EmptyState(self.runtime_dir, id="empty")
            yield ModuleTable(id="modules")
            with Horizontal(id="bottom"):
                yield ModelTable(id="models")
                yield ProcessTable(id="processes")
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

    # --- the refresh loop -------------------------------------------------------------

    def refresh_from_model(self) -> None:
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
        self.query_one(StatusLine).show(snapshot, self.paused, self._job_note())
        self.frames += 1
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()

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

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        """A click on a module table header sorts by that column (a second click reverses)."""
        table = event.data_table
        if isinstance(table, ModuleTable):
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
        self.query_one(ModuleTable).focus()

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

    def action_follow(self) -> None:
        history = self.query_one(HistoryTable)
        history.set_follow(not history.follow)
        if self.snapshot is not None:
            history.show(self.snapshot)

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
) -> int:
    """Run the interactive viewer until the user quits; the return value is the exit status."""
    fleet = Fleet(clock)
    if job is not None:
        pids = [job.pid]
    collector = Collector(fleet, directory=directory, pids=pids, sockets=sockets)
    app = TopApp(fleet, collector, delay=delay, job=job)
    app.run()
    return 0
