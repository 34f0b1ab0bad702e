"""The server thread's turn for the GIL, where a job's thread would keep it for seconds.

CPython gives the GIL to a thread waiting for it once the thread holding it kept it past the switch
interval (5 ms). A thread that lets the GIL go briefly and often takes it back first, every time:
the waiting thread is woken at each release, wakes too late, and never waits out the interval that
would make the holder hand it over. DSPy's calls do that: each makes uuid4s, and `os.urandom` lets
the GIL go around its system call. In a `Predict` loop over an instant LM (a cached job, thousands
of calls a second) a thread coming back from a 1 ms sleep waited 0.45 to 0.9 s for the GIL; the
server thread, which comes back from its select, zlib and writes several times a tick, took
seconds a tick, and a recording lost most payloads (more calls came between two of its ticks than
the payload ring holds).

So the server thread says from when it wants the GIL (`due`): before a call that lets the GIL go,
when that call is reckoned to end (`released`), and once it ended, at once (it works on); and the
job's thread, ending an LM call past that moment, lets the GIL go until the server thread has it
(`give`): until the server says it runs again (`back`, at the end of each such call and between
the parts of its work), at most GIVE_WAIT, and not again for BACKOFF if it did not (its call took
longer than reckoned). This covers the server thread's own calls and the switches CPython forces
on it after 5 ms of work. What a job pays for it is the server thread's wake-up, tens of µs, a few
times a tick, beside the server's work itself: what CPython's own switching would cost it
(benchmarks/README.md, Recordings).
"""

from __future__ import annotations

import contextlib
import math
import sys
import threading
import time

# How long the job's thread waits for the server thread to take the GIL, at most (it is waiting for
# it, so it takes it as soon as it wakes: tens of µs).
GIVE_WAIT = 0.001
# After a wait the server did not end (its call is still running, or it is stuck: a disk that
# stalls), the job's threads do not wait again for this long, twice as long after each such
# wait in a row, up to BACKOFF_MOST: a server thread that never comes costs a job a few ms in all.
BACKOFF = 0.002
BACKOFF_MOST = 1.0
_NOTHING = contextlib.nullcontext()


def _always() -> bool:
    return True


class Handoff:
    """One process's: the server thread's side (`released`) and the job's threads' side (`give`)."""

    def __init__(self, perf=time.perf_counter) -> None:
        self.due = math.inf  # perf time from which the server thread waits for the GIL (inf: it does not)
        self._perf = perf
        # Python running without a GIL (3.13's free-threaded build; an extension module may turn
        # it on later) needs no turns: the server thread never says it wants one then.
        self.needed = getattr(sys, "_is_gil_enabled", _always)
        self._back = threading.Event()  # set by the server thread once it has the GIL back
        self._giving = False  # a job thread is waiting in `give`
        self._quiet_until = 0.0
        self._backoff = BACKOFF
        self.given = 0  # times a job thread let the GIL go for the server (and it came)
        self.missed = 0  # ... and it did not come within GIVE_WAIT
        self.waited = 0.0  # seconds job threads spent giving, in all

    def released(self, expected: float = 0.0) -> Released | contextlib.nullcontext:
        """Around a call of the server thread that lets the GIL go and ends in about `expected` s."""
        return Released(self, expected) if self.needed() else _NOTHING

    def back(self) -> None:
        """The server thread runs (between the parts of its work): a job thread giving may go on."""
        if self._giving:
            self._back.set()

    def idle(self) -> None:
        """The server thread wants nothing until it says so."""
        self.due = math.inf

    def give(self, now: float) -> None:
        """On a job's thread ending an LM call at `now`, past `due`: let the GIL go until the server
        thread has it (one job thread at a time; at most GIVE_WAIT)."""
        if self._giving or now < self._quiet_until:
            return
        self._giving = True
        back = self._back
        back.clear()
        try:
            if self.due <= now:  # looked at again once `_giving` is seen: the server sets `back` after
                if back.wait(GIVE_WAIT):
                    self.given += 1
                    self._backoff = BACKOFF
                    self.waited += self._perf() - now
                else:
                    self.missed += 1
                    end = self._perf()
                    self.waited += end - now
                    self._quiet_until = end + self._backoff
                    self._backoff = min(BACKOFF_MOST, 2 * self._backoff)
        finally:
            self._giving = False


class Released:
    """`with handoff.released(s):` on the server thread (a class: cheaper than a generator)."""

    __slots__ = ("handoff", "expected")

    def __init__(self, handoff: Handoff, expected: float) -> None:
        self.handoff = handoff
        self.expected = expected

    def __enter__(self) -> None:
        handoff = self.handoff
        handoff.due = handoff._perf() + self.expected
        if handoff._giving:  # it lets the GIL go now: a job thread waiting for it takes it
            handoff._back.set()

    def __exit__(self, *exc: object) -> None:
        handoff = self.handoff
        handoff.due = handoff._perf()  # back to work: wanted whenever it is not held
        if handoff._giving:
            handoff._back.set()
