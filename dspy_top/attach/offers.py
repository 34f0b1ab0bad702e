"""The user's running DSPy jobs that dspy-top could attach to, looked for every few seconds: what the viewer offers.

A daemon thread asks `discover` (which reads /proc only: nothing the processes could notice)
every SCAN_EVERY seconds and keeps the latest answer; `on_change` is called, from that thread,
when the answer changed. Not a `Source`: these processes send nothing and count for nothing
until attached, when the local source finds their socket like any other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from dspy_top.attach.discover import Candidate, attachable_processes

SCAN_EVERY = 3.0  # seconds between two looks at /proc (a scan costs a few ms of CPU)


class AttachOffers:
    """The latest `Candidate`s of `runtime_dir`'s user, by pid."""

    def __init__(
        self,
        runtime_dir: Path | None = None,
        *,
        every: float = SCAN_EVERY,
        on_change: Callable[[], None] | None = None,
        scan: Callable[[Path | None], list[Candidate]] = attachable_processes,
    ) -> None:
        self.runtime_dir = runtime_dir
        self.every = every
        self.on_change = on_change
        self.scans = 0
        self.error: str | None = None  # why the last scan failed, if it did
        self._scan = scan
        self._latest: tuple[Candidate, ...] = ()
        self._stop = threading.Event()
        self._soon = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="dspy-top-attach-offers", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._soon.set()

    def latest(self) -> tuple[Candidate, ...]:
        return self._latest

    def scan_soon(self) -> None:
        """Look again now rather than at the next tick (an attach just ended, either way)."""
        self._soon.set()

    def scan_now(self) -> None:
        try:
            found = tuple(self._scan(self.runtime_dir))
        except Exception as exc:  # /proc unreadable, a race with an exiting process: the next scan tries again
            self.error = f"{type(exc).__name__}: {exc}"
            return
        finally:
            self.scans += 1
        self.error = None
        if found != self._latest:
            self._latest = found
            self._changed()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.scan_now()
            self._soon.wait(self.every)
            self._soon.clear()

    def _changed(self) -> None:
        if self.on_change is not None:
            try:
                self.on_change()
            except Exception:
                pass  # the app is shutting down: nobody to tell
