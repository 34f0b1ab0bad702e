"""The replay's screens: the live viewer's, with the replay bar under the header and the `g` input.

`ReplayScreen` adds them to any live screen (the app's keys do the rest: app.py); the
screens themselves, their panes, keys and filters, are the live viewer's, unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on
from textual.binding import Binding
from textual.widgets import Input

from dspy_top.viewer.components.empty_state import EmptyState
from dspy_top.viewer.components.header import Header
from dspy_top.viewer.replay.bar import ReplayBar
from dspy_top.viewer.replay.goto import GotoBar
from dspy_top.viewer.screens.main import MainScreen
from dspy_top.viewer.screens.optimizers import OptimizersScreen
from dspy_top.viewer.screens.view import FleetScreen
from dspy_top.viewer.terminal import inert

if TYPE_CHECKING:
    from dspy_top.viewer.replay.app import ReplayApp

# The replay's keys, on every live screen; what they do is the app's (app.py).
BINDINGS = [
    Binding("space", "app.pause", "Play/pause"),
    Binding("right_square_bracket", "app.replay_speed(1)", "Faster", key_display="]"),
    Binding("left_square_bracket", "app.replay_speed(-1)", "Slower", key_display="[", show=False),
    Binding("full_stop", "app.replay_step(1)", "Step", key_display="."),
    Binding("comma", "app.replay_step(-1)", "Step back", key_display=",", show=False),
    Binding("g", "goto", "Go to"),
    Binding("e", "app.replay_end", "End"),
    *(Binding(str(digit), f"app.replay_fraction({digit / 10})", f"Go to {digit}0%", show=False) for digit in range(10)),
]


class ReplayScreen(FleetScreen):
    """A live screen with the replay bar and the go-to input (mixed into each live screen below)."""

    app: ReplayApp
    BINDINGS = BINDINGS

    def on_mount(self) -> None:
        # Textual calls each class's own `on_mount`: the live screen's has composed and filled it.
        bar = ReplayBar(self.app.replay_title, id="replay-bar")
        self.mount(bar, after=self.query_one(Header))
        self.app.draw_bar(bar)  # in the first frame already
        self.call_after_refresh(self.app.show_replay)  # and again once mounted: a seek may have ended meanwhile
        self.mount(GotoBar(id="goto"), before=self.query_one("#status"))
        where = inert(self.app.replay.where)
        self.query_one(EmptyState).update(Text(f"reading {where}…", justify="center", style="dim"))

    def on_screen_resume(self) -> None:
        # Back from the help, the inspector or another screen: the bar says where the replay is now.
        bars = self.query(ReplayBar)
        if bars:
            self.app.draw_bar(bars.first())

    def action_goto(self) -> None:
        self.add_class("-goto")
        self.query_one(GotoBar).focus()

    @on(Input.Submitted, "#goto")
    def goto_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        self.query_one(GotoBar).value = ""
        self.remove_class("-goto")
        self.first_focus().focus()
        if text:
            self.app.goto(text)


class ReplayMainScreen(ReplayScreen, MainScreen):
    """The main screen of a replay."""


class ReplayOptimizersScreen(ReplayScreen, OptimizersScreen):
    """The optimizer screen of a replay."""
