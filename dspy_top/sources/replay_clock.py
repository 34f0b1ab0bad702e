"""`ReplayClock`: where a replay is in its recording's time, how fast it moves, and the fleet's clock.

A position in the recording's own time (epoch seconds, as the job's clock read them), moved
by the monotonic clock times the speed while playing, still while paused, and kept at the
recording's end while following it (a file still being written: its newest messages, like
`tail -f`). The fleet reads `now`, so rates, uptimes and sparklines are the recording's, at
any speed. Thread-safe: the UI sets it, the replay source and the fleet read it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

SPEEDS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)  # what `[` and `]` step through


@dataclass(frozen=True)
class Playback:
    """How the replay moves, as the replay bar shows it."""

    position: float  # epoch seconds in the recording
    start: float
    end: float
    speed: float
    playing: bool
    following: bool  # kept at the end: a recording still being written is shown as it grows

    @property
    def fraction(self) -> float:
        span = self.end - self.start
        return min(1.0, max(0.0, (self.position - self.start) / span)) if span > 0 else 1.0

    @property
    def at_end(self) -> bool:
        return self.position >= self.end


class ReplayClock:
    """The replay's position in recorded time, between `start` and `end` (which grows while the
    recording is written)."""

    def __init__(self, start: float, end: float, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._monotonic = monotonic
        self._start = start
        self._end = max(start, end)
        self._at = self._end  # the position at `_since`
        self._since = monotonic()
        self._speed = 1.0
        self._playing = False
        self._following = False
        self._folding: float | None = None

    # --- reading ----------------------------------------------------------------------

    def now(self) -> float:
        """The fleet's clock: the position, or the time of what is being folded during a catch-up."""
        folding = self._folding
        if folding is not None:
            return folding
        return self.position()

    def position(self) -> float:
        with self._lock:
            return self._position(self._monotonic())

    def _position(self, mono: float) -> float:
        if self._following:
            return self._end
        if not self._playing:
            return self._at
        return min(self._end, self._at + (mono - self._since) * self._speed)

    def playback(self) -> Playback:
        with self._lock:
            return Playback(
                self._position(self._monotonic()), self._start, self._end, self._speed, self._playing, self._following
            )

    def monotonic_at(self, at: float) -> float | None:
        """When (`time.monotonic()`) the position reaches `at` at the current speed; None while it stands still."""
        with self._lock:
            if self._following:
                return self._monotonic()
            if not self._playing:
                return None
            return self._since + max(0.0, at - self._at) / self._speed

    # --- moving -------------------------------------------------------------------------

    def _anchor(self) -> None:
        mono = self._monotonic()
        self._at = self._position(mono)
        self._since = mono

    def play(self) -> None:
        with self._lock:
            self._anchor()
            if self._at >= self._end and not self._following:
                self._at = self._start  # played to the end: play again from the start
            self._playing = True

    def pause(self) -> None:
        with self._lock:
            self._anchor()
            self._playing = self._following = False

    def toggle(self) -> bool:
        """Play or pause; True when it now plays."""
        if self.playback().playing or self.playback().following:
            self.pause()
            return False
        self.play()
        return True

    def set_speed(self, speed: float) -> None:
        with self._lock:
            self._anchor()
            self._speed = max(SPEEDS[0], min(SPEEDS[-1], speed))
            self._following = False

    def step_speed(self, step: int) -> float:
        """The next faster (1) or slower (-1) of SPEEDS; the speed now."""
        with self._lock:
            speed = self._speed
        faster = [s for s in SPEEDS if s > speed]
        slower = [s for s in SPEEDS if s < speed]
        if step > 0 and faster:
            speed = faster[0]
        elif step < 0 and slower:
            speed = slower[-1]
        self.set_speed(speed)
        return speed

    def follow(self) -> None:
        """Jump to the end and stay there: a recording being written is shown as it grows."""
        with self._lock:
            self._following = True
            self._playing = True
            self._at = self._end
            self._since = self._monotonic()

    def seek(self, at: float) -> float:
        """Move to `at` (kept within the recording), playing or paused as before; the position."""
        with self._lock:
            self._following = False
            self._at = min(self._end, max(self._start, at))
            self._since = self._monotonic()
            return self._at

    def extend(self, end: float, final: bool = False) -> None:
        """The recording now reaches `end` (it is still being written); `final`: it ends there
        (its writer stopped: the end the wall clock had moved it to comes back to its last message)."""
        with self._lock:
            if end > self._end or final:
                self._anchor()
                self._end = max(self._start, end)
                self._at = min(self._at, self._end)

    def stop_at_end(self) -> None:
        """Played to the end of a finished recording: stand there (space plays it again from the start)."""
        with self._lock:
            if self._playing and not self._following and self._position(self._monotonic()) >= self._end:
                self._at = self._end
                self._playing = False

    # --- catching up ------------------------------------------------------------------------

    def folding(self, at: float | None) -> None:
        """While the source folds a stretch it skipped (a seek), the fleet's clock reads the time of
        what it folds, so rates and sparklines come out as if it had been played; None ends it."""
        self._folding = at
