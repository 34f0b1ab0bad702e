"""What the viewer needs from a job started by `dspy-top run` (implemented in `dspy_top.run`).

`dspy_top.viewer.app.run_viewer(job=job, delay=seconds)` attaches to `job.pid` only, shows a
log pane with `read_new_output()` on every refresh and the exit status once `returncode()`
is set; the first ctrl+c calls `interrupt()`, a second one (or one after the job ended) quits.
"""

from __future__ import annotations

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
