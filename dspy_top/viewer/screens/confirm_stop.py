"""`k`: "Stop pid N (command)? y/n" before the viewer asks a job to end its run."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from dspy_top.viewer.terminal import inert


class ConfirmStop(ModalScreen[bool]):
    """Dismissed with True on `y`, False on `n` or escape."""

    BINDINGS = [
        Binding("y", "answer(True)", "Stop it"),
        Binding("n,escape,q", "answer(False)", "Keep running"),
    ]

    def __init__(self, pid: int, command: str) -> None:
        super().__init__()
        self.pid = pid
        self.command = command

    def compose(self) -> ComposeResult:
        text = Text()
        text.append(f"Stop pid {self.pid} ({inert(self.command) or 'python'})? ", style="bold")
        text.append("y/n", style="bold reverse")
        text.append("\n\nIts next LM call raises dspy_top.BudgetStop: the run ends with exit status 1 and "
                    "says why. Calls already in flight finish and are counted.", style="dim")
        with Vertical(id="stop-box"):
            yield Static(text, id="stop-text")

    def action_answer(self, stop: bool) -> None:
        self.dismiss(stop)
