"""`ReplayApp`: the live viewer over a `RecordingSource`, with the replay's keys and bar.

Everything the live viewer shows and does works the same (its screens, panes, keys and
filters; payloads open, read from the file); on top of it the replay's keys move the
source's clock (screens.py binds them), and the bar under the header says where it is.
Space plays and pauses the replay instead of freezing the screen; `k` is not offered (a
recording cannot stop anything).
"""

from __future__ import annotations

import time
from pathlib import Path

from dspy_top.model import Fleet
from dspy_top.pricing import Price
from dspy_top.sources.collector import Collector
from dspy_top.sources.replay import RecordingSource
from dspy_top.sources.replay_clock import Playback
from dspy_top.sources.replay_timeline import parse_goto
from dspy_top.viewer.app import TopApp
from dspy_top.viewer.replay.bar import ReplayBar, replay_title
from dspy_top.viewer.replay.help import ReplayHelpScreen
from dspy_top.viewer.replay.screens import ReplayMainScreen, ReplayOptimizersScreen, ReplayScreen
from dspy_top.viewer.screens.help import HelpScreen

BAR_EVERY = 0.25  # seconds between redraws of the replay bar (the panes keep the viewer's -d pace)
SEEK_POLL = 0.05  # seconds between looks for a seek's end, to show it at once
SEEK_PATIENCE = 10.0  # seconds a seek is waited for before the screen is refreshed anyway


class ReplayApp(TopApp):
    """`dspy-top replay`: the viewer over recordings."""

    CSS_PATH = [TopApp.CSS_PATH, Path(__file__).with_name("replay.tcss")]
    TITLE = "dspy-top replay"
    SCREENS = {"optimizers": ReplayOptimizersScreen}

    def __init__(self, fleet: Fleet, collector: Collector, replay: RecordingSource, **options) -> None:
        super().__init__(fleet, collector, **options)
        self.replay = replay
        self._seek_started: float | None = None  # a seek is under way since then (the bar says so)
        self._moving = False  # playing (or following) when the bar was last drawn

    def get_default_screen(self) -> ReplayMainScreen:
        return ReplayMainScreen()

    def on_mount(self) -> None:
        # Textual calls TopApp's `on_mount` too: its refresh timer, the collector, the notice.
        self.set_interval(BAR_EVERY, self.show_replay)
        if self.collector is not None and not self.collector.alive:
            # Reading starts once the first frame is on screen: folding holds the GIL, and would delay it.
            self.call_after_refresh(self.collector.start)
        self._await_seek()  # the start position, shown as soon as it is folded

    # --- the bar --------------------------------------------------------------------------

    def show_replay(self) -> None:
        playback = self.replay.clock.playback()
        moving = playback.playing or playback.following
        if self._moving and not moving:  # it stopped (at the end): the panes show where, not a moment before
            self.refresh_now()
        self._moving = moving
        view = self.view
        if not isinstance(view, ReplayScreen):
            return
        bars = view.query(ReplayBar)
        if bars:
            self.draw_bar(bars.first(), playback)

    def draw_bar(self, bar: ReplayBar, playback: Playback | None = None) -> None:
        bar.show(playback or self.replay.clock.playback(), self._seek_started is not None, replay_title(self.replay))

    @property
    def replay_title(self) -> str:
        return replay_title(self.replay)

    def action_optimizers(self) -> None:
        super().action_optimizers()
        # Back on a screen already composed: its bar was last drawn when it was left, so draw it
        # now, before its first frame (a pushed screen draws its own once mounted).
        self.show_replay()

    # --- the keys (bound by screens.py) ---------------------------------------------------

    def action_pause(self) -> None:
        """Space: play or pause the replay (the live viewer's space freezes the screen instead)."""
        self.replay.toggle()
        self.show_replay()

    def action_replay_speed(self, step: int) -> None:
        self.replay.step_speed(step)
        self.show_replay()

    def action_replay_step(self, steps: int) -> None:
        self.replay.step(steps)
        self._await_seek()

    def action_replay_end(self) -> None:
        self.replay.to_end()
        self._await_seek()

    def action_replay_fraction(self, fraction: float) -> None:
        timeline = self.replay.timeline
        self.replay.seek(timeline.start + fraction * (timeline.end - timeline.start))
        self._await_seek()

    def goto(self, text: str) -> None:
        """What the user typed after `g`: a time, +30s, 40%, trial 7, start, end."""
        try:
            goto = parse_goto(text)
            if goto.kind == "trial":
                self.replay.seek_trial(self.replay.timeline.trial(int(goto.value)))
            elif goto.kind == "end":
                self.replay.to_end()
            else:
                self.replay.seek(self.replay.timeline.moment(goto, self.replay.clock.position()))
        except ValueError as exc:
            self.notify(str(exc), severity="warning", timeout=6)
            return
        self._await_seek()

    def _await_seek(self) -> None:
        """Show the seek's result as soon as the source has told everything up to the new position."""
        self._seek_started = time.monotonic()
        self.show_replay()
        self.set_timer(SEEK_POLL, self._seek_done)

    def _seek_done(self) -> None:
        started = self._seek_started
        if started is None or not self.is_running:
            return
        if not self.replay.caught_up() and time.monotonic() - started < SEEK_PATIENCE:
            self.set_timer(SEEK_POLL, self._seek_done)
            return
        self._seek_started = None
        self.refresh_now()
        self.show_replay()

    # --- what a replay does differently -------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop_job":
            return False  # nothing to stop: the source refuses it too (CannotRequest)
        return super().check_action(action, parameters)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(ReplayHelpScreen())


def run_replay_viewer(
    source: RecordingSource,
    *,
    delay: float = 1.0,
    prices: dict[str, Price] | None = None,
    budget_usd: float | None = None,
    notice: str | None = None,
) -> int:
    """Run the viewer over `source` until the user quits; the exit status."""
    fleet = Fleet(source.clock.now, prices=prices, budget_usd=budget_usd)
    app = ReplayApp(fleet, Collector(fleet, [source]), source, delay=delay, notice=notice, start_collector=False)
    app.run()
    return 0
