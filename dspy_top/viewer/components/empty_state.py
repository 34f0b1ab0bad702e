"""What the screen says while no instrumented process is attached: how to start one."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from dspy_top.viewer.terminal import inert


class EmptyState(Static):
    """Shown (class `-empty` on the screen) until a process appears."""

    def __init__(self, watching: str, **kwargs) -> None:
        super().__init__(self.message(watching), **kwargs)
        self.watching = watching
        self._said: tuple[bool, int | None] = (False, None)

    def show_offered(self, offered: bool) -> None:
        """Whether the process list below offers DSPy jobs started without dspy-top (`A` attaches one)."""
        self._say(offered, self._said[1])

    def show_job_ended(self, code: int | None) -> None:
        """`dspy-top run`'s job ended with `code` (None: it has not): its dismissed process is not coming back."""
        self._say(self._said[0], code)

    def _say(self, offered: bool, code: int | None) -> None:
        if (offered, code) != self._said:
            self._said = (offered, code)
            self.update(self.message(self.watching, offered, code))

    @staticmethod
    def message(watching: str, offered: bool = False, job_exit: int | None = None) -> Text:
        text = Text(justify="center")
        if job_exit is not None:
            text.append(f"The job ended (exit {job_exit}) and its process was dismissed.\n\n", style="bold")
            text.append("Its output stays in the job output pane below. ")
            text.append("q", style="bold cyan")
            text.append(" quits.")
            return text
        text.append("No instrumented DSPy process is running.\n\n", style="bold")
        if offered:
            text.append("DSPy jobs started without dspy-top are listed below: ")
            text.append("A", style="bold cyan")
            text.append(" attaches the selected one (after a y/n).\n\n")
        text.append("Start one and it appears here:\n\n")
        text.append("  dspy-top run -- python job.py", style="bold cyan")
        text.append("\n  or call ")
        text.append("dspy_top.instrument()", style="bold cyan")
        text.append(" in your program\n  or run it with ")
        text.append("DSPY_TOP=1", style="bold cyan")
        text.append("\n\n")
        text.append(f"watching {inert(watching)}", style="dim")
        return text
