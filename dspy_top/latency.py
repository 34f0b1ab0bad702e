"""Latency histograms with log-spaced buckets: cheap to fill, small to send, good to ~10%.

Shared by the instrumented process (which fills them) and the viewer (which reads
percentiles from them); standard library only.
"""

from __future__ import annotations

import math

# Bucket k holds latencies in (FIRST * GROWTH**(k-1), FIRST * GROWTH**k]; bucket 0 holds
# everything up to FIRST. Four buckets per doubling keeps a percentile within ~19%.
FIRST = 0.001
GROWTH = 2 ** 0.25
BUCKETS = 96  # up to about 1,000 × 2**24 ms: longer than any LM call

_LOG_GROWTH = math.log(GROWTH)


def bucket_of(seconds: float) -> int:
    """The bucket index for one latency."""
    if seconds <= FIRST:
        return 0
    return min(BUCKETS - 1, math.ceil(math.log(seconds / FIRST) / _LOG_GROWTH - 1e-9))


def upper_bound(bucket: int) -> float:
    """The largest latency a bucket holds."""
    return FIRST * GROWTH ** bucket


def percentile(histogram: dict[int, int], q: float) -> float | None:
    """The q-th percentile (0..1) of a sparse {bucket: count} histogram, or None if empty."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return upper_bound(bucket)
    return upper_bound(max(histogram))


def merge(into: dict[int, int], other: dict[int, int]) -> dict[int, int]:
    """Add one sparse histogram into another, in place; returns it."""
    for bucket, count in other.items():
        into[bucket] = into.get(bucket, 0) + count
    return into
