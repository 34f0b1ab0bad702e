"""One line under the tables: broken processes, hints, paused state; `-problem` when something is wrong."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual.widgets import Static

from dspy_top.model.states import CONNECTING, CONNECTING_STATUS
from dspy_top.viewer.hosts_report import host_state
from dspy_top.viewer.terminal import inert

if TYPE_CHECKING:
    from dspy_top.model import Snapshot


class StatusLine(Static):
    """Says what needs saying in one line, most urgent first."""

    _shown = None

    def show(self, snapshot: Snapshot, paused: bool, note: str | None = None) -> None:
        text = Text(no_wrap=True, overflow="ellipsis")
        hosts = snapshot.host_problems  # a host down hides all its processes: said first
        for host in hosts:
            text.append(f" {inert(host_state(host, snapshot.at, countdown=False))} ", style="bold red")
        problems = snapshot.problems
        for process in problems[:3]:
            text.append(f" pid {process.pid or '?'}: {inert(process.status)} ", style="bold red")
        if len(problems) > 3:
            text.append(f" (+{len(problems) - 3} more: p for the process list) ", style="red")
        waiting = [p for p in snapshot.processes if p.state == CONNECTING and p.status != CONNECTING_STATUS]
        for process in waiting[:2]:
            text.append(f" {inert(process.status)} ", style="cyan")
        if paused:
            text.append(" paused: the screen is frozen, collection goes on (space resumes) ", style="bold yellow")
        if note:
            text.append(f" {inert(note)} ", style="italic")
        self.set_class(bool(problems or hosts), "-problem")
        if text.plain != self._shown:
            self._shown = text.plain
            self.update(text, layout=False)  # always one line: no need to lay the screen out again
