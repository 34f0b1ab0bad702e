"""What a recording keeps as it grows: which `stats` are stored, and what stops at its size caps.

Every call changes the process's numbers, so storing each `stats` (about 230 bytes) would make
them most of a slow job's file: `StoredStats` keeps one per few calls, or per few seconds while
calls are slow, and never a heartbeat. A reader adds the calls stored after the latest stats to
its totals (state.RecordingState.totals), so they are exact to the last call however seldom they
are stored. `SizeCaps`: past its cap a recording stops storing payloads (counts go on); past
twice its cap (the hard cap) it stops storing call and tool events too, keeping stats now and
then, and scopes, budget and exit always. Each cap reached is said once, in the recording.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dspy_top.protocol import CALL, CALLS, EVAL_PROGRESS, STATS, TOOL

# One `stats` is stored once STATS_CALLS calls were stored since the last, else once any call was
# and STATS_SLOW_EVERY passed, else (calls in flight, scopes) once STATS_IDLE_EVERY passed.
STATS_CALLS = 5
STATS_SLOW_EVERY = 5.0
STATS_IDLE_EVERY = 10.0
STATS_EVERY_PAST_CAP = 60.0  # past the hard cap (twice the cap) stats are kept this often
_THINNED = (CALLS, CALL, TOOL, EVAL_PROGRESS)  # events not kept past the hard cap
_NOT_NUMBERS = ("t", "at", "dropped_viewer")  # what a heartbeat `stats` changes


class StoredStats:
    """Which `stats` messages the writer stores; `pack` is its msgpack packer's."""

    def __init__(self, pack: Callable[[Any], bytes]) -> None:
        self.pack = pack
        self.last = b""  # the numbers of the last one stored, packed
        self.at = float("-inf")
        self.calls_since = 0  # call events stored since the last one

    def keep(self, message: dict[str, Any], now: float) -> bool:
        """Whether to store this `stats`: a job that makes a call a second, or waits minutes on one,
        would otherwise store more stats than calls, and they would be most of its file."""
        calls, waited = self.calls_since, now - self.at
        if calls < STATS_CALLS and not (calls and waited >= STATS_SLOW_EVERY) and waited < STATS_IDLE_EVERY:
            return False
        numbers = self.pack({k: v for k, v in message.items() if k not in _NOT_NUMBERS})
        if numbers == self.last:
            return False
        self.last = numbers
        self.at = now
        self.calls_since = 0
        return True


class SizeCaps:
    """The recording's size caps, once reached; `add` stores the recording event that says so, `size`
    is the file's size so far."""

    def __init__(self, cap_bytes: int, add: Callable[[dict[str, Any]], None], size: Callable[[], int]) -> None:
        self.cap_bytes = cap_bytes
        self.add = add
        self.size = size
        self.payloads_stopped = False  # past the cap
        self.events_stopped = False  # past the hard cap
        self._last_stats = float("-inf")

    def keep_past_hard_cap(self, message: dict[str, Any], now: Callable[[], float]) -> bool:
        kind = message.get("t")
        if kind in _THINNED:
            return False
        if kind == STATS:
            at = now()
            if at - self._last_stats < STATS_EVERY_PAST_CAP:
                return False
            self._last_stats = at
        return True

    def check(self, now: float) -> None:
        """After a write: whether the file reached a cap."""
        if not self.payloads_stopped and self.size() >= self.cap_bytes:
            self.stop_payloads(now, self.size())
        if not self.events_stopped and self.size() >= 2 * self.cap_bytes:
            self.add(
                {
                    "t": "recording",
                    "event": "event_cap",
                    "at": now,
                    "bytes": self.size(),
                    "cap_bytes": self.cap_bytes,
                    "message": "the recording reached twice its size cap: call and tool events stop here; "
                    f"stats are kept every {STATS_EVERY_PAST_CAP:g} s, scopes, budget and exit always",
                }
            )
            self.events_stopped = True

    def stop_payloads(self, now: float, size: int) -> None:
        """The cap is reached (`size`: the file with what waits to be written): payloads stop here."""
        self.payloads_stopped = True
        self.add(
            {
                "t": "recording",
                "event": "payload_cap",
                "at": now,
                "bytes": size,
                "cap_bytes": self.cap_bytes,
                "message": "the recording reached its size cap: payloads stop here, counts go on",
            }
        )
