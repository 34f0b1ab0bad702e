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
        """The last `count` buckets up to the current one, oldest first; empty buckets are 0."""
        count = count or self.length
        last = math.floor(now / self.width)
        return [self._buckets.get(i, 0.0) for i in range(last - count + 1, last + 1)]


def add_series(series: list[list[float]], count: int) -> list[float]:
    out = [0.0] * count
    for values in series:
        for i, value in enumerate(values[-count:]):
            out[i] += value
    return out
