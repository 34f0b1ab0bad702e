"""`/` with free words searches prompts and responses too: the payloads of the calls in view are read
from their processes, a bounded number of requests at a time, and kept as text (model/payloads.py).

A process keeps the payloads of its newest `history_capacity` calls (1,000 by default), so only
those of a running process can be read; older calls, and calls of a process that ended, match
by their module, model and error only. Reading happens while a search is on, on the collector's
thread; the job's server answers each request on its own thread, never on the job's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dspy_top.model import CallQuery, Fleet

IN_FLIGHT = 64  # payload requests outstanding at once


class PayloadSearch:
    """Which payloads to ask for next, and how far the reading has got."""

    def __init__(self) -> None:
        self.asked: set[tuple[str, int]] = set()
        self.readable = 0  # calls in view whose payload their process still has, or the viewer read
        self.read = 0  # of those, read (or found gone)

    @property
    def active(self) -> bool:
        return self.readable > 0

    def step(self, fleet: Fleet, query: CallQuery, focus: str | None, request: Callable[[str, int], None]) -> None:
        """Ask for the next payloads the search needs (none without free words)."""
        if not query.words:
            self.asked.clear()
            self.readable = self.read = 0
            return
        wanted: list[tuple[str, int]] = []
        room = IN_FLIGHT - len(self.asked)
        readable = read = 0
        with fleet.lock:
            texts = fleet.payload_texts
            left = fleet.payloads_kept(focus)
            for call in reversed(tuple(fleet.history)):
                process = call.process
                key = (process, call.id)
                if texts.known(key):
                    readable += 1
                    read += 1
                    continue
                if left.get(process, 0) <= 0:
                    continue  # the process no longer keeps it (or ended): only its metadata is searchable
                left[process] -= 1
                readable += 1
                if key not in self.asked and len(wanted) < room:
                    wanted.append(key)
        self.readable, self.read = readable, read
        for key in wanted:
            self.asked.add(key)
            request(*key)

    def answered(self, key: tuple[str, int]) -> bool:
        """A payload came back; True when it is time to ask for more."""
        self.asked.discard(key)
        return len(self.asked) <= IN_FLIGHT // 2

    def note(self) -> str | None:
        """For the history's title while reading: `searching prompts and responses: 340 of 1,000 read`."""
        if self.readable and self.read < self.readable:
            return f"searching prompts and responses: {self.read:,} of {self.readable:,} read"
        if self.readable:
            return f"prompts and responses of {self.readable:,} calls searched"
        return None
