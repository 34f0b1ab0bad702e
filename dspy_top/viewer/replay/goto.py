"""The `g` input: where to go in the recording (a time from the start, +30s, 40%, trial 7, start, end)."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input

from dspy_top.sources.replay_timeline import GOTO_HELP


class GotoBar(Input):
    """Hidden until `g`; enter goes there and returns to the tables, escape just returns."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, **kwargs) -> None:
        super().__init__(placeholder=f"go to: {GOTO_HELP}", **kwargs)

    def action_cancel(self) -> None:
        self.value = ""
        self.post_message(self.Submitted(self, "", None))
