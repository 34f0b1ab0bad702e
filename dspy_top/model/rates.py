"""Rates from cumulative counters: a short sliding window for "now" and fixed buckets for sparklines."""

from __future__ import annotations

import math
from collections import deque


class RateWindow:
    """Per-second rate of a cumulative value over the last `window` seconds of samples."""

    __slots__ = ("window", "_samples")

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self._samples: deque[tuple[float, float]] = deque()

    def observe(self, now: float, value: float) -> None:
        samples = self._samples
        samples.append((now, value))
        # Keep one sample older than the window as the base of the difference.
        while len(samples) > 2 and samples[1][0] <= now - self.window:
            samples.popleft()

    def seed(self, at: float, value: float) -> None:
        """What the value was at `at`, before every sample so far (a base for the first rate)."""
        if not self._samples or self._samples[0][0] > at:
            self._samples.appendleft((at, value))

    def latest(self) -> float | None:
        return self._samples[-1][1] if self._samples else None

    def rate(self, now: float) -> float:
        samples = self._samples
        if len(samples) < 2:
            return 0.0
        t_base, v_base = samples[0]
        t_last, v_last = samples[-1]
        if now - t_last > self.window or t_last <= t_base:
            return 0.0  # nothing heard for a whole window
        return max(0.0, (v_last - v_base) / (t_last - t_base))


class BucketSeries:
    """Increments summed into fixed-width time buckets, newest last, for sparklines."""

    __slots__ = ("width", "length", "_buckets")

    def __init__(self, width: float = 1.0, length: int = 120) -> None:
        self.width = width
        self.length = length
        self._buckets: dict[int, float] = {}

    def add(self, now: float, amount: float) -> None:
        if amount <= 0:
            return
        index = math.floor(now / self.width)
        self._buckets[index] = self._buckets.get(index, 0.0) + amount
        if len(self._buckets) > self.length * 2:
            oldest = index - self.length
            for key in [k for k in self._buckets if k <= oldest]:
                del self._buckets[key]

    def series(self, now: float, count: int | None = None) -> list[float]:
        """The last `count` finished buckets, oldest first; empty buckets are 0.

        The bucket `now` falls in is still filling: drawn, it would read as a collapse."""
        count = count or self.length
        current = math.floor(now / self.width)
        return [self._buckets.get(i, 0.0) for i in range(current - count, current)]


def add_series(series: list[list[float]], count: int) -> list[float]:
    out = [0.0] * count
    for values in series:
        for i, value in enumerate(values[-count:]):
            out[i] += value
    return out


def seed_windows(windows, calls, since: float, now: float) -> None:
    """Give each rate window a base sample from recent calls: `windows` holds (window, amount of a call,
    which calls count or None for all); `calls` are what the process holds, complete after `since`."""
    for window, amount, keep in windows:
        current = window.latest()
        if current is None:
            continue
        base_at = max(now - window.window, since)
        if base_at >= now:
            continue
        recent = sum(amount(call) for call in calls if base_at < call.end <= now and (keep is None or keep(call)))
        window.seed(base_at, current - recent)
