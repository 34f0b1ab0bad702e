"""When the app takes a snapshot: once before the first frame, then on a timer, never once per event.

Mixed into `TopApp` (app.py). Collecting starts only once the first frame is on screen (the
fleet and the collector may be made then, by `connect`), so attaching and folding never delay
it. Then a refresh every `delay` seconds takes one snapshot under the fleet's lock and hands it
to the screen in front; with nothing new, only the clock is redrawn.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from dspy_top.viewer.messages import OffersChanged

if TYPE_CHECKING:
    from dspy_top.model import Snapshot

DELAYS = (0.5, 1.0, 2.0, 5.0)  # seconds between refreshes that `d` steps through (like top's d)
QUIET_REDRAW = 5.0  # seconds: with no new data, the tables are redrawn this often (rates decay)
SECOND_LOOK = 0.25  # seconds after collecting starts: a quick look once the collector has attached


class RefreshLoop:
    """The snapshot timer, the first-frame connect, and `d` and space (pause), which pace it."""

    def take_first_snapshot(self) -> None:
        """A fleet given up front (tests, `dspy-top run`): its first snapshot, which the first frame shows."""
        if self.fleet is None:
            return
        with self.fleet.lock:
            self._version = self.fleet.version
            self.snapshot = self.fleet.snapshot(self.focus_key, self.call_query, self.history_rows)
        self._full_at = time.monotonic()

    def start_refreshing(self) -> None:
        """Once mounted: collecting after the first frame, and the steady refresh timer."""
        self.call_after_refresh(self._start_collecting)
        self._refresh_timer = self.set_interval(self.delay, self.refresh_from_model)

    def _start_collecting(self) -> None:
        if self.fleet is None and self._connect is not None:
            self.fleet, self.collector = self._connect()
            self.listen_to(self.collector)
        if self.collector is not None and self.start_collector:
            self.collector.start()
        if self.offering is not None:
            self.offering.start(lambda: self.post_message(OffersChanged()))
        self.refresh_now()
        # A quick second look once the collector has attached, then the steady pace.
        self.set_timer(SECOND_LOOK, self.refresh_from_model)

    def stop_collecting(self) -> None:
        if self.collector is not None:
            self.collector.stop()
        if self.offering is not None:
            self.offering.stop()

    def refresh_from_model(self) -> None:
        if not self.is_running or self.fleet is None:
            return  # shutting down (a timer that fired as the widgets went away), or not collecting yet
        self._follow_job()
        self.keep_shown_payloads()  # what the screen shows (paused or not) opens after its process ended
        if self.paused and self.snapshot is not None:
            return
        with self.fleet.lock:
            version = self.fleet.version
            snapshot = self.fleet.snapshot(self.focus_key, self.call_query, self.history_rows)
        quiet = version == self._version and time.monotonic() - self._full_at < QUIET_REDRAW
        view = self.view
        if quiet and self.snapshot is not None:
            # Nothing arrived: only the clock moved. Tables wait (rates decay on the next full redraw).
            self.snapshot = snapshot
            if view is not None:
                view.show_clock(snapshot)
            return
        self._version = version
        self._full_at = time.monotonic()
        self.apply(snapshot)

    def apply(self, snapshot: Snapshot) -> None:
        """Hand `snapshot` to the screen in front, and say the budget alerts it brings."""
        self._search_step()
        self.snapshot = snapshot
        view = self.view
        if view is not None and view.snapshot is not snapshot:
            view.show(snapshot)
        self.say_alerts(snapshot)
        self._stops_done(snapshot)
        self.update_stop_binding()

    def refresh_now(self) -> None:
        if self.fleet is None:
            return
        with self.fleet.lock:
            snapshot = self.fleet.snapshot(self.focus_key, self.call_query, self.history_rows)
        self.apply(snapshot)

    def action_delay(self) -> None:
        """`d`: the next refresh interval of DELAYS (as top's d sets it)."""
        later = [d for d in DELAYS if d > self.delay + 1e-9]
        self.delay = later[0] if later else DELAYS[0]
        if self._refresh_timer is not None:
            self._refresh_timer.stop()
        self._refresh_timer = self.set_interval(self.delay, self.refresh_from_model)
        self.notify(f"refreshing every {self.delay:g} s (d changes it)", timeout=3)

    def action_pause(self) -> None:
        self.paused = not self.paused
        view = self.view
        if view is not None:
            view.show_paused()
        if not self.paused:
            self.refresh_now()
