"""The two ways `dspy-top run` watches its job: the live view, or batch mode's snapshots (-b).

Both attach to the job's process family (`JobFamily`) and return the job's exit status. The
viewer is imported only when it is used: batch mode never imports Textual.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from dspy_top.run.job import RunningJob
from dspy_top.sources.family import JOB_RESCAN, JobFamily

if TYPE_CHECKING:
    from dspy_top.model import Fleet
    from dspy_top.sources.collector import Collector


def job_collector(
    fleet: Fleet, job: RunningJob, runtime_dir: Path | None = None, family: JobFamily | None = None
) -> Collector:
    """A collector that attaches to the job's pid and to every descendant that serves dspy-top."""
    from dspy_top.sources.collector import Collector
    from dspy_top.sources.local import LocalSockets

    family = family or JobFamily(job.pid)
    return Collector(fleet, [LocalSockets(family, runtime_dir, rescan_every=JOB_RESCAN)])


def watch_interactive(job: RunningJob, delay: float, runtime_dir: Path | None = None, history: int = 10_000) -> int:
    """The live view until the user quits; stops the job if it still runs then. The job's status."""
    from dspy_top.viewer.app import TopApp

    def connect() -> tuple[Fleet, Collector]:  # once the first frame is on screen
        from dspy_top.model import Fleet

        fleet = Fleet(history_capacity=history)
        return fleet, job_collector(fleet, job, runtime_dir or job.runtime_dir)

    where = runtime_dir or job.runtime_dir
    app = TopApp(None, delay=delay, job=job, notice=job.notice, watching=str(where) if where else None, connect=connect)

    def on_signal(signum, frame) -> None:  # the terminal went away, or we were told to stop
        job.terminate()
        app.exit()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        app.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return job.stop()


FINAL_WAIT = 30.0  # seconds the job may take to exit after sending its final numbers before snapshots go on


class _Quit(Exception):
    """The second ctrl+c (or SIGTERM/SIGHUP) in batch mode."""


def watch_batch(
    job: RunningJob,
    delay: float,
    iterations: int | None = None,
    as_json: bool = False,
    out: TextIO | None = None,
    runtime_dir: Path | None = None,
) -> int:
    """Snapshots every `delay` seconds while the job runs, the final one once it ended. The job's status.

    The snapshots are batch mode's (`dspy_top.viewer.batch`): the same loop, text and JSON. The
    caller says how the job exited (and shows the end of its output when it failed).
    """
    from dspy_top.model import Fleet
    from dspy_top.viewer.batch import Printer, say, watch

    fleet = Fleet()
    family = JobFamily(job.pid)
    collector = job_collector(fleet, job, runtime_dir or job.runtime_dir, family).start()
    printer = Printer(out or sys.stdout, as_json, repeats=False)  # the final numbers print once
    interrupts = 0
    armed = True  # ctrl+c may end the wait for the job (not the final snapshot)

    def on_signal(signum, frame) -> None:
        nonlocal interrupts
        if signum == signal.SIGINT and interrupts == 0:
            interrupts += 1
            job.interrupt()
            say("sent SIGINT to the job; ctrl+c again stops it and quits")
            return
        if armed:
            raise _Quit()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        if job.notice:
            say(job.notice)
        recording = f", recording to {job.recorded_to}" if job.recorded_to else ""
        until = "until the run ends (--log FILE keeps it), " if job.log_is_ours else ""
        say(f"running {job.command_line} (pid {job.pid}){recording}; {until}its output goes to {job.log_path}")
        try:
            watch(fleet, printer, delay=delay, iterations=iterations, first_after=delay, ended=_ended(job, fleet))
            code = job.returncode()
        except _Quit:
            code = job.stop()
        armed = False
        _wait_for_final_numbers(fleet)
        with fleet.lock:
            fleet.exit_status(job.pid, code)  # `ended (exit N)`: the job's exit message cannot say it
        printer.print(fleet)
        if not family.members:
            say("no process of the job served dspy-top (did it import dspy?)")
        return code
    except BrokenPipeError:
        return job.stop()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        collector.stop()


def _ended(job: RunningJob, fleet: Fleet) -> Callable[[float], bool]:
    """Wait up to N seconds for the job to end, in short steps (signals are handled between them).

    Once the job's own process has sent its final numbers, the wait goes on until it exits
    (up to FINAL_WAIT): a snapshot printed in between would be the final one, printed again."""

    def sent_exit() -> bool:
        with fleet.lock:
            return fleet.sent_exit(job.pid)

    def ended(timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while job.returncode() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                if not sent_exit() or left < -FINAL_WAIT:
                    return False
            job.wait(min(0.1, max(left, 0.1)))
        return True

    return ended


def _wait_for_final_numbers(fleet: Fleet, timeout: float = 3.0) -> None:
    """Give the collector a moment to read the job's `exit` messages (and to find a last socket)."""
    deadline = time.monotonic() + timeout
    time.sleep(min(timeout, 2 * JOB_RESCAN))
    while time.monotonic() < deadline:
        with fleet.lock:
            if not fleet.awaiting_final_numbers():
                return
        time.sleep(0.05)
