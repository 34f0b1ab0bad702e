"""Questions asked before the viewer does something that cannot be undone: `k` (stop a job), `x` (dismiss one),
`A` (attach to one).

A small box over the screen it was asked from (which stays visible, dimmed); `y` answers yes,
`n`, escape or `q` no.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

from dspy_top.viewer.terminal import inert


class Confirm(ModalScreen[bool]):
    """Dismissed with True on `y`, False on `n`, escape or `q`."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape,q", "answer(False)", "No"),
    ]

    def __init__(self, question: str, detail: str) -> None:
        super().__init__()
        self.question = question
        self.detail = detail

    def compose(self) -> ComposeResult:
        text = Text()
        text.append(f"{self.question} ", style="bold")
        text.append("y/n", style="bold reverse")
        text.append(f"\n\n{self.detail}", style="dim")
        with Vertical(id="confirm-box"):
            yield Static(text, id="confirm-text")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ConfirmStop(Confirm):
    """`k`: ask a running job to end its run."""

    def __init__(self, pid: int, command: str) -> None:
        super().__init__(
            f"Stop pid {pid} ({inert(command) or 'python'})?",
            "Its next LM call ends the run: the job exits with status 1 and says that dspy-top stopped it. "
            "Calls already in flight finish and are counted.",
        )


class ConfirmDismiss(Confirm):
    """`x`: forget an ended (or broken) process, and its numbers with it."""

    def __init__(self, pid: int, command: str, calls: int) -> None:
        super().__init__(
            f"Dismiss pid {pid} ({inert(command) or 'python'})?",
            f"Its {calls:,} calls and their cost leave the screen and the totals: this viewer cannot show them again.",
        )


class ConfirmAttach(Confirm):
    """`A`: instrument a running DSPy job that was started without dspy-top (`dspy-top attach PID`)."""

    def __init__(self, pid: int, command: str, evidence: str) -> None:
        super().__init__(
            f"Attach to pid {pid} ({inert(command) or 'python'})?",
            f"Seen in /proc, untouched so far: {inert(evidence)}. "
            f"dspy-top instruments the running job as `dspy-top attach {pid}` does "
            "(through gdb before Python 3.14: the job stops for tens of milliseconds); what DSPy's "
            "history already holds is counted as before the attach. `dspy-top detach` undoes it.",
        )
