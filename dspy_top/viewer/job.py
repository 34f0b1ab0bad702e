"""What the viewer needs from a job started by `dspy-top run` (implemented in `dspy_top.run`).

`TopApp(fleet, collector, job=job)` (`dspy_top.run.watch`) watches the job's processes, shows a
log pane with `read_new_output()` on every refresh and the exit status once `returncode()`
is set; the first ctrl+c calls `interrupt()`, a second one (or one after the job ended) quits.
The app keeps what it read in a `JobTranscript` that every screen's log pane reads from.
"""

from __future__ import annotations

import itertools
from collections import deque
from pathlib import Path
from typing import Protocol, runtime_checkable


@runtime_checkable
class Job(Protocol):
    """A child process the viewer watches: attach only to its pid, tail its log, forward ctrl+c."""

    pid: int
    command: list[str]
    log_path: Path

    def returncode(self) -> int | None:
        """The exit status once the job has ended, else None."""

    def interrupt(self) -> None:
        """Send the job SIGINT (the first ctrl+c in the viewer)."""

    def read_new_output(self) -> str:
        """Text appended to the job's log since the last call ('' when nothing new)."""


class JobTranscript:
    """The job's output as the log panes show it, held once for every screen; bounded like scrollback.

    Each pane remembers how far it has read (`end`); one that fell behind past what is kept
    starts afresh from the retained tail.
    """

    def __init__(self, max_lines: int = 2000) -> None:
        self.max_lines = max_lines
        self._chunks: deque[str] = deque()
        self._first = 0  # the index of _chunks[0] among every chunk ever added
        self._lines = 0
        self.exit_code: int | None = None

    @property
    def end(self) -> int:
        return self._first + len(self._chunks)

    def add(self, text: str) -> None:
        if not text:
            return
        self._chunks.append(text)
        self._lines += text.count("\n")
        while self._lines > self.max_lines and len(self._chunks) > 1:
            self._lines -= self._chunks.popleft().count("\n")
            self._first += 1

    def since(self, index: int) -> tuple[str, bool]:
        """The text added from chunk `index` on, and True when older text was dropped since (start afresh)."""
        if index < self._first:
            return "".join(self._chunks), True
        return "".join(itertools.islice(self._chunks, index - self._first, None)), False
