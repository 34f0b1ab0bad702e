"""The live viewer: a Textual app that renders `Fleet.snapshot()` on a timer (never per event).

The collector's thread folds messages into the fleet; the app wakes every `delay` seconds,
takes one snapshot under the fleet's lock and hands it to the screen in front (screens/),
which updates its widgets, diffed by key. The app owns the fleet and the collector, the view
state every screen shares, and which screen is in front; each screen owns its panes and keys.
Its other concerns are mixed in from their own modules: the refresh timer and the first-frame
connect (refresh_loop.py), notifications and budget alerts (notices.py), payloads
(payload_requests.py), stop, dismiss and attach with their confirmations (process_actions.py),
and `dspy-top run`'s job (job.py). Threads reach the app only through `post_message`.
Styling lives in app.tcss.

The first frame comes before any collection: `dspy-top` builds the model and the collector
(`connect`) and starts collecting once it is on screen, and what the first frame does not show
(the model, the other screens) is imported after it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App
from textual.binding import Binding

from dspy_top.model.budget import BudgetAlarm
from dspy_top.model.calls import HISTORY, CallQuery
from dspy_top.viewer.attach_offers import AttachOffering
from dspy_top.viewer.components.job_log import MAX_LINES
from dspy_top.viewer.job import Job, JobFollowing, JobTranscript
from dspy_top.viewer.notices import Notices
from dspy_top.viewer.payload_requests import PayloadRequests
from dspy_top.viewer.payload_search import PayloadSearch
from dspy_top.viewer.process_actions import ProcessActions
from dspy_top.viewer.refresh_loop import RefreshLoop
from dspy_top.viewer.screens import is_screen
from dspy_top.viewer.screens.main import MainScreen
from dspy_top.viewer.screens.view import FleetScreen
from dspy_top.viewer.shown_payloads import KEPT_CHARS, ShownPayloads

if TYPE_CHECKING:
    from textual.pilot import Pilot

    from dspy_top.model import Fleet, Snapshot
    from dspy_top.pricing import Price
    from dspy_top.sources.base import Source
    from dspy_top.sources.collector import Collector
    from dspy_top.viewer.screens.optimizers import OptimizersScreen


# Screens the first frame does not need are imported when first shown: the first frame comes sooner.
def _optimizers_screen() -> OptimizersScreen:
    from dspy_top.viewer.screens.optimizers import OptimizersScreen

    return OptimizersScreen()


class TopApp(RefreshLoop, Notices, PayloadRequests, ProcessActions, JobFollowing, App):
    """`dspy-top`: the top-style view of every attached DSPy process."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses elsewhere find it too
    TITLE = "dspy-top"
    ENABLE_COMMAND_PALETTE = False
    SCREENS = {"optimizers": _optimizers_screen}  # made on the first `o`, then kept (its sort and cursor)

    # Every other key belongs to a screen (screens/); ctrl+c answers on all of them.
    BINDINGS = [Binding("ctrl+c", "interrupt", "Quit", show=False, priority=True)]

    def __init__(
        self,
        fleet: Fleet | None,
        collector: Collector | None = None,
        *,
        delay: float = 1.0,
        job: Job | None = None,
        watching: str | None = None,
        history_rows: int | None = None,
        start_collector: bool = True,
        notice: str | None = None,
        connect: Callable[[], tuple[Fleet, Collector]] | None = None,
        kept_payloads: int = KEPT_CHARS,
        offer_attach: Path | None = None,
    ) -> None:
        """`fleet` and `collector`, or `connect` to make them once the first frame is on screen. With
        `offer_attach` (a runtime directory) the process list also offers this user's DSPy jobs started
        without dspy-top, and `A` attaches to one (their sockets then come to that directory)."""
        super().__init__()
        self.fleet = fleet
        self.collector = collector
        self._connect = connect
        self.delay = delay
        self.job = job
        self.job_output = JobTranscript(MAX_LINES) if job is not None else None
        self.watching = watching or (collector.where if collector else ".")  # said while nothing is attached
        self._history_rows = history_rows
        self.start_collector = start_collector
        self.start_notice = notice  # said once the screen is up (why the runtime directory is not the usual one)
        # What every screen shows alike: set on one screen, followed by the others.
        self.paused = False
        self.focus_key: str | None = None
        self.call_query = CallQuery("")
        self.log_hidden = False
        self.snapshot: Snapshot | None = None
        self.shown_payloads = ShownPayloads(kept_payloads)
        self._interrupts = 0
        self._version = -1
        self._full_at = 0.0
        self.budget_alarm = BudgetAlarm()
        self._alerts_seen: set[tuple[str, str, str, str]] = set()
        self._stop_target_key: str | None = None
        self._stopping: dict[str, int] = {}  # processes asked to stop (k, or a job's stop alert): key -> pid
        self._stopped: set[int] = set()  # pids whose end after a stop was said
        self._refresh_timer = None
        self.search = PayloadSearch()  # `/` with free words: prompts and responses read for it
        self.offering = AttachOffering(offer_attach) if offer_attach is not None else None
        if collector is not None:
            self.listen_to(collector)

    @property
    def history_rows(self) -> int:
        """Every call the fleet holds is in the history pane (a line-API view draws only what is on screen)."""
        if self._history_rows is not None:
            return self._history_rows
        return self.fleet.history.capacity if self.fleet is not None else HISTORY

    def get_default_screen(self) -> MainScreen:
        # The main screen composes itself while the app starts; the app does not wait for it (as a
        # Textual mode would: the first frame came 0.1 s of CPU later). A key pressed before its
        # panes exist is ignored (FleetScreen.check_action).
        return MainScreen()

    @asynccontextmanager
    async def run_test(self, *args, **kwargs) -> AsyncIterator[Pilot]:
        """As Textual's, once the main screen is composed: a test may query its panes at once."""
        async with super().run_test(*args, **kwargs) as pilot:
            while not self.screen_stack[0].is_mounted:
                await pilot.pause(0.01)
            yield pilot

    def on_load(self) -> None:
        self.take_first_snapshot()

    def on_mount(self) -> None:
        self._follow_job()
        if self.snapshot is not None:
            self.apply(self.snapshot)  # on screen already: the alerts it brings
        # Collecting starts once the first frame is on screen: attaching and folding never delay it.
        self.start_refreshing()
        if self.start_notice:
            self.notify(self.start_notice, severity="warning", timeout=20)

    def listen_to(self, collector: Collector) -> None:
        """Payload answers and notices come from the collector's thread as messages."""
        collector.on_payload = self._payload_from_thread
        collector.on_notice = self._notice_from_thread

    def on_unmount(self) -> None:
        self.stop_collecting()

    @property
    def view(self) -> FleetScreen | None:
        """The live screen in front, or under the modal or inspect screen in front (it keeps refreshing)."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, FleetScreen):
                return screen if screen.is_mounted else None
        return None

    # --- what every screen shows alike ------------------------------------------------------

    def set_query(self, text: str) -> None:
        """The history (and module) filter, on every screen."""
        self.call_query = CallQuery(text)
        self.refresh_now()

    def set_focus_process(self, key: str | None) -> None:
        self.focus_key = key
        self.refresh_now()

    def action_focus_all(self) -> None:
        self.set_focus_process(None)

    # --- switching screens -------------------------------------------------------------------

    def action_optimizers(self) -> None:
        """`o`: the optimizer screen, or back from it."""
        if is_screen(self.screen, "OptimizersScreen"):
            self.pop_screen()
        else:
            self.push_screen("optimizers")

    def show_main(self) -> MainScreen:
        """Back to the main screen (from the optimizer screen); the main screen."""
        if is_screen(self.screen, "OptimizersScreen"):
            self.pop_screen()
        main = self.screen_stack[0]
        assert isinstance(main, MainScreen)
        return main

    def action_help(self) -> None:
        from dspy_top.viewer.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


def run_viewer(
    sources: Sequence[Source] | Callable[[], Sequence[Source]],
    *,
    watching: str | None = None,
    delay: float = 1.0,
    clock: Callable[[], float] = time.time,
    prices: dict[str, Price] | None = None,
    budget_usd: float | None = None,
    notice: str | None = None,
    history: int = HISTORY,
    offer_attach: Path | None = None,
) -> int:
    """Run the interactive viewer on `sources` until the user quits; the return value is the exit status.

    `sources` may be a function that makes them: it is called once the first frame is on screen
    (then `watching` says what they watch, for the screen with nothing attached). With `offer_attach`, the
    process list offers the user's DSPy jobs started without dspy-top, and `A` attaches to one."""

    def connect() -> tuple[Fleet, Collector]:  # once the first frame is on screen
        from dspy_top.model import Fleet
        from dspy_top.sources.collector import Collector

        fleet = Fleet(clock, prices=prices, budget_usd=budget_usd, history_capacity=history)
        return fleet, Collector(fleet, sources() if callable(sources) else sources)

    if watching is None and not callable(sources):
        watching = ", ".join(source.where for source in sources)
    app = TopApp(None, delay=delay, notice=notice, watching=watching, connect=connect, offer_attach=offer_attach)
    app.run()
    return 0
