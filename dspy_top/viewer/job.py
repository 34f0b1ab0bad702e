"""What the viewer needs from a job started by `dspy-top run` (implemented in `dspy_top.run`).

`TopApp(fleet, collector, job=job)` (`dspy_top.run.watch`) watches the job's processes, shows a
log pane with `read_new_output()` on every refresh and the exit status once `returncode()`
is set; the first ctrl+c calls `interrupt()`, a second one (or one after the job ended) quits.
The app keeps what it read in a `JobTranscript` that every screen's log pane reads from, and
`JobFollowing` (mixed into `TopApp`) does the reading, says the job's state and forwards ctrl+c.
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


class JobFollowing:
    """The app's side of the job: its output read on every refresh, its state said, ctrl+c forwarded."""

    def _follow_job(self) -> None:
        job, transcript = self.job, self.job_output
        if job is None or transcript is None:
            return
        ended = transcript.exit_code is not None
        try:
            transcript.add(job.read_new_output())
        except Exception as exc:  # the log file went away: say so once
            if not ended:
                transcript.add(f"\n[dspy-top: cannot read the job's output: {exc}]\n")
        code = job.returncode()
        if code is not None and not ended:
            transcript.exit_code = code
        if code is not None and self.fleet is not None:
            with self.fleet.lock:
                self.fleet.exit_status(job.pid, code)  # the job's process row says how it exited
        view = self.view
        if view is not None:
            view.sync_job()

    def job_note(self) -> str | None:
        """The job's state in the status line, as the process list says it: its exit message ends it there."""
        if self.job is None:
            return None
        code = self.job.returncode()
        if code is not None:
            return f"job exited with code {code} · q quits"
        snapshot = self.snapshot
        row = next((p for p in snapshot.processes if p.pid == self.job.pid), None) if snapshot else None
        if row is not None and row.state == "ended":
            return f"job pid {self.job.pid} ended its run (final numbers received) · exiting"
        return f"job pid {self.job.pid} running · ctrl+c interrupts it"

    def action_interrupt(self) -> None:
        """ctrl+c: with a running job, the first one interrupts the job, the second quits."""
        job = self.job
        if job is None or job.returncode() is not None or self._interrupts >= 1:
            self.exit()
            return
        self._interrupts += 1
        try:
            job.interrupt()
        except Exception as exc:
            self.notify(f"cannot interrupt the job: {exc}", severity="error")
            return
        self.notify("sent SIGINT to the job · ctrl+c again quits", timeout=4)
