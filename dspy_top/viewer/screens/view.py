"""What every live screen shares: the header, the job's log, the history, the filter bar and status line.

`FleetScreen` renders the snapshot the app hands it (`show`): every pane from that one snapshot,
so the header, the tables and the history agree at every instant. The panes are sized by their
rows (`fit_heights`, on each snapshot and whenever the space for them changes): the history
always keeps a share of the screen, the job's log a few lines, and the screen's own panes
take what their rows need of the rest. It keeps the view state the
app holds for every screen (pause, filter, focused process, hidden log) in step when it comes
back to the front. `z` zooms the focused pane to the whole screen (class `-zoomed` on the
screen, `-zoom` on the pane); escape leaves the innermost mode (zoom, filter, focused process,
pause, paused scrolling). Subclasses add their own panes (`compose_panes`, `show_panes`) and keys.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Input

from dspy_top.viewer.components.empty_state import EmptyState
from dspy_top.viewer.components.filter_bar import FilterBar
from dspy_top.viewer.components.header import Header
from dspy_top.viewer.components.history_table import HistoryTable
from dspy_top.viewer.components.job_log import JobLog
from dspy_top.viewer.components.status_line import StatusLine

if TYPE_CHECKING:
    from dspy_top.model import Snapshot
    from dspy_top.viewer.app import TopApp

NARROW_BELOW = 100  # columns: below this the screens switch to their narrow layout
HISTORY_SHARE = 0.3  # of the panes' height: the history never gets less (a top shows what is happening)
HISTORY_LEAST = 5  # rows: its title, its header and three calls

# Keys more than one screen binds, each listed where the screen wants it in its footer (help
# second: it stays in view at 80 columns). The function keys answer as in htop: F1 help, F3 search
# and F4 filter (one filter here), F5 tree, F6 sort, F9 stop (htop's kill), F10 quit.
QUIT = Binding("q,f10", "app.quit", "Quit", key_display="q")
PAUSE = Binding("space", "app.pause", "Pause")
FILTER = Binding("slash,f3,f4", "filter", "Filter", key_display="/")
# One footer item for both sort keys (`< > Sort`): the footer fits 120 columns with every key it shows.
SORT_GROUP = Binding.Group("Sort", compact=True)
SORT_BACK = Binding("less_than_sign", "sort_step(-1)", "Sort ←", key_display="<", group=SORT_GROUP)
SORT_ON = Binding("greater_than_sign,f6", "sort_step(1)", "Sort →", key_display=">", group=SORT_GROUP)
FOLLOW = Binding("f", "follow", "Follow")
HELP = Binding("question_mark,h,f1", "app.help", "Help", key_display="?")
ALL_PROCESSES = Binding("a", "app.focus_all", "All processes", show=False)
STOP = Binding("k,f9", "app.stop_job", "Stop job", key_display="k")
LOG = Binding("l", "toggle_log", "Log", show=False)
REVERSE = Binding("R", "reverse", "Reverse sort", show=False)
ZOOM = Binding("z", "zoom", "Zoom")
DELAY = Binding("d", "app.delay", "Refresh interval", show=False)
LEAVE = Binding("escape", "leave", "Back", show=False)
# The panes `z` can zoom (a DataTable or the history); the filter bar is not one.
ZOOMABLE = ("KeyedTable", "HistoryTable", "JobLog")


class Panes(Container):
    """The stacked panes between the header and the status line; when their room changes they are fitted again."""

    def on_resize(self) -> None:
        screen = self.screen
        if isinstance(screen, FleetScreen):
            screen.fit_heights()


class FleetScreen(Screen):
    """A live view of the fleet: shared panes around the subclass's own, refreshed from each snapshot."""

    app: TopApp

    def __init__(self) -> None:
        super().__init__()
        self.snapshot: Snapshot | None = None  # the snapshot on screen
        self._layout_key: tuple | None = None
        self._view_key: tuple[str | None, str] | None = None  # (focused process, filter) the history holds

    # --- building -------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(id="header")
        with Panes(id="main"):
            yield EmptyState(self.app.watching, id="empty")
            yield from self.compose_panes()
            if self.app.job is not None:
                yield JobLog(id="joblog")
            yield HistoryTable(id="history")
        yield FilterBar(id="filter")
        yield StatusLine(id="status")
        yield Footer()

    def compose_panes(self) -> Iterable[Widget]:
        """This screen's own panes, between the empty state and the job's log."""
        return ()

    def on_mount(self) -> None:
        self.set_class(self.app.job is not None, "-job")
        self.relayout(self.app.size.width)
        self.first_focus().focus()
        if self.app.snapshot is not None:
            self.show(self.app.snapshot)

    def on_screen_resume(self) -> None:
        """Back in front (after another screen): catch up with the app's latest snapshot and width."""
        if self.is_mounted:
            changed = self.relayout(self.app.size.width)
            if self.app.snapshot is not None and (changed or self.app.snapshot is not self.snapshot):
                self.show(self.app.snapshot)

    def on_resize(self, event) -> None:
        if self.relayout(event.size.width) and self.snapshot is not None:
            self.show(self.snapshot)  # new columns: the rows come back from the snapshot

    def first_focus(self) -> Widget:
        """The pane that takes the focus when the screen opens and after the filter bar."""
        return self.query_one(HistoryTable)

    def relayout(self, width: int) -> bool:
        """Fit the panes to `width` columns; False when they already were."""
        narrow = width < NARROW_BELOW
        snapshot = self.snapshot
        multi = snapshot is not None and len(snapshot.processes) > 1 and snapshot.focus is None
        key = (width, narrow, multi)
        if key == self._layout_key:
            return False
        self._layout_key = key
        self.set_class(narrow, "-narrow")
        self.layout_panes(width, narrow)
        self.query_one(HistoryTable).layout_for(width, narrow, multi)
        return True

    def layout_panes(self, width: int, narrow: bool) -> None:
        """Fit this screen's own panes to `width` columns."""

    def fit_heights(self) -> None:
        """Size the panes by their rows in the room there is: the history keeps `HISTORY_SHARE` of it (at
        least `HISTORY_LEAST` rows), the job's log a sixth (4 to 8 rows), the screen's own panes the rest."""
        if not self.is_mounted or self.snapshot is None:
            return
        if self.has_class("-zoomed"):  # one pane, the whole room (app.tcss): no height of the stack applies
            for pane in self.query(".-zoom, .-zoom-path"):
                pane.styles.height = None
                pane.styles.max_height = None
            return
        room = self.query_one(Panes).size.height
        if room <= 0:
            return
        history = max(HISTORY_LEAST, int(room * HISTORY_SHARE))
        left = room - history
        if self.app.job is not None and not self.app.log_hidden and self.query_one(JobLog).display:
            log = min(8, max(4, room // 6))
            set_height(self.query_one(JobLog), log)
            left -= log
        self.fit_panes(max(0, left))

    def fit_panes(self, room: int) -> None:
        """Size this screen's own panes within `room` rows (what the history and the log leave)."""

    # --- rendering ------------------------------------------------------------------

    def show(self, snapshot: Snapshot) -> None:
        """Render `snapshot` in every pane, each table diffed by key."""
        previous = self.snapshot
        self.snapshot = snapshot
        self._follow_view_state()
        if previous is None or len(previous.processes) != len(snapshot.processes) or previous.focus != snapshot.focus:
            self.relayout(self.app.size.width)
        self.set_class(not snapshot.processes, "-empty")
        self.show_clock(snapshot)
        self.show_panes(snapshot)
        self.query_one(HistoryTable).show(snapshot, self.app.search.note())
        self.show_status()
        self.sync_job()
        self.fit_heights()

    def show_panes(self, snapshot: Snapshot) -> None:
        """Render this screen's own panes."""

    def show_offers(self) -> None:
        """The processes `A` could attach to changed: a screen that lists processes shows them."""

    def show_clock(self, snapshot: Snapshot) -> None:
        """Only the clock moved (nothing new arrived): the header alone is redrawn."""
        self.query_one(Header).show(snapshot, self.app.paused)

    def show_status(self) -> None:
        if self.snapshot is not None:
            self.query_one(StatusLine).show(self.snapshot, self.app.paused, self.app.job_note())

    def show_paused(self) -> None:
        self.set_class(self.app.paused, "-paused")
        if self.snapshot is not None:
            self.show_clock(self.snapshot)
            self.show_status()

    def sync_job(self) -> None:
        """The job's new output in the log pane, and its end once it ended."""
        transcript = self.app.job_output
        if transcript is None:
            return
        self.query_one(JobLog).sync(transcript)
        self.set_class(transcript.exit_code is not None, "-job-ended")
        self.query_one(EmptyState).show_job_ended(transcript.exit_code)

    def _follow_view_state(self) -> None:
        """Pause, hidden log, focused process and filter as the app holds them (set on any screen)."""
        app = self.app
        self.set_class(app.paused, "-paused")
        self.set_class(app.log_hidden, "-hide-log")
        key = (app.focus_key, app.call_query.text)
        if key == self._view_key:
            return
        if self._view_key is not None:
            self.query_one(HistoryTable).reset_rows()  # other calls: new rows, not a diff
        self._view_key = key
        bar = self.query_one(FilterBar)
        if bar.value != app.call_query.text:
            bar.value = app.call_query.text
        self.set_class(bool(app.call_query.text), "-filtering")
        self.query_changed()

    def query_changed(self) -> None:
        """The filter changed: panes that filter by it follow."""

    def shown_calls(self) -> tuple:
        """The calls whose rows the history pane shows now (their payloads are kept: shown_payloads.py)."""
        history = self.query_one(HistoryTable)
        return history.calls_in_view() if history.display else ()

    def process_at_cursor(self) -> str | None:
        """The process `k` targets when none is focused: the one under this screen's cursor, if any."""
        return None

    # --- keys and table events ------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not self.is_mounted:
            return False  # a key pressed as the viewer starts, before this screen's panes exist
        if action == "toggle_log":
            return self.app.job is not None
        return True

    # --- modes: zoom, and escape out of any of them ----------------------------------------

    def action_zoom(self) -> None:
        """`z`: the focused pane alone on the screen (k9s-style), or back to every pane."""
        if self.has_class("-zoomed"):
            self.unzoom()
            return
        pane = self.focused
        if (
            pane is None
            or type(pane).__name__ not in ZOOMABLE
            and not any(base.__name__ in ZOOMABLE for base in type(pane).__mro__)
        ):
            self.notify("z zooms a pane: move to one with tab first", severity="warning", timeout=4)
            return
        pane.add_class("-zoom")
        for ancestor in pane.ancestors:
            if ancestor is self:
                break
            ancestor.add_class("-zoom-path")
        self.add_class("-zoomed")
        self.fit_heights()

    def unzoom(self) -> None:
        self.remove_class("-zoomed")
        for widget in self.query(".-zoom, .-zoom-path"):
            widget.remove_class("-zoom", "-zoom-path")
        self.fit_heights()

    def action_leave(self) -> None:
        """escape: out of the innermost mode (zoom, filter, focused process, pause, paused scrolling)."""
        app = self.app
        history = self.query_one(HistoryTable)
        if self.has_class("-zoomed"):
            self.unzoom()
        elif app.call_query.text:
            app.set_query("")
        elif app.focus_key is not None:
            app.set_focus_process(None)
        elif app.paused:
            app.action_pause()
        elif not history.follow:
            history.set_follow(True)
        else:
            self.leave_screen()

    def leave_screen(self) -> None:
        """escape with no mode left to leave: the main screen stays, others go back to it."""

    def action_filter(self) -> None:
        self.add_class("-filtering")
        self.query_one(FilterBar).focus()

    @on(Input.Submitted, "#filter")
    def filter_submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        self.set_class(bool(text), "-filtering")
        self.app.set_query(text)
        self.first_focus().focus()

    def action_follow(self) -> None:
        history = self.query_one(HistoryTable)
        history.set_follow(not history.follow)

    def action_toggle_log(self) -> None:
        if self.app.job is not None:
            self.app.log_hidden = not self.app.log_hidden
            self.set_class(self.app.log_hidden, "-hide-log")
            self.fit_heights()

    @on(HistoryTable.Chosen)
    def inspect(self, event: HistoryTable.Chosen) -> None:
        """Enter on a history row: that call in full (the one under the cursor when the key was
        pressed), ←/→ through the calls the pane shows."""
        from dspy_top.viewer.screens.inspect import InspectScreen  # not needed for the first frame

        calls = list(self.query_one(HistoryTable).calls)
        index = next((i for i, c in enumerate(calls) if c.key == event.call.key), None)
        if index is None:
            calls, index = [event.call], 0
        self.app.push_screen(InspectScreen(calls, index, self.app.module_chains()))


def set_height(widget: Widget, rows: int, *, most: bool = False) -> None:
    """Set a pane's height (or, `most`, its greatest height) when it changed: each change lays the screen out again."""
    current = widget.styles.max_height if most else widget.styles.height
    if current is None or current.value != rows or not current.is_cells:
        if most:
            widget.styles.max_height = rows
        else:
            widget.styles.height = rows
