"""Latency sketches: log-spaced buckets fine enough that every percentile is within 1% (DDSketch's idea).

Bucket k ≥ 1 holds latencies in (FIRST·γ^(k-1), FIRST·γ^k] with γ = (1+α)/(1-α); reading a
bucket as 2·FIRST·γ^k/(γ+1) is then within α of any latency it holds. Bucket 0 holds every
latency up to FIRST (cache hits), read as FIRST. Sketches merge by adding counts, so totals,
parents in the module tree and several processes combine exactly.

Shared by the instrumented process (which fills sparse {bucket: count} dicts, one log per
call, in its batched fold) and the viewer (which reads percentiles from them); on the wire a
sketch travels as `latency_sketch`, a flat list of delta-coded bucket numbers and counts
bounded to `WIRE_BINS` bins (docs/protocol.md). Older jobs sent `latency_hist`, coarse
buckets of 2^(1/4) (`LEGACY_*`): `from_legacy` reads them as their upper bounds did before.
Standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

ACCURACY = 0.01  # relative error of any percentile above FIRST
GAMMA = (1 + ACCURACY) / (1 - ACCURACY)
FIRST = 0.001  # seconds: bucket 0 holds everything up to here
MAX_SECONDS = 100_000.0  # the last bucket holds everything above (no LM call lasts 28 hours)
BUCKETS = math.ceil(math.log(MAX_SECONDS / FIRST) / math.log(GAMMA)) + 1
# Bins a sketch keeps on the wire: past this, the lowest are merged into one (the fast tail loses
# detail, P50 and P95 keep theirs). 512 bins cover 1 ms to 27 s at 1% without merging anything.
WIRE_BINS = 512

_LOG_GAMMA = math.log(GAMMA)
_MIDPOINT = 2.0 / (GAMMA + 1.0)

# The encoding before `latency_sketch`: bucket k ≤ 1 ms·2^(k/4), 96 buckets, read as upper bounds.
LEGACY_GROWTH = 2**0.25
LEGACY_BUCKETS = 96


def bucket_of(seconds: float) -> int:
    """The bucket index for one latency."""
    if seconds <= FIRST:
        return 0
    return min(BUCKETS - 1, math.ceil(math.log(seconds / FIRST) / _LOG_GAMMA - 1e-9))


def upper_bound(bucket: int) -> float:
    """The largest latency a bucket holds (its edge): every latency up to it is in this bucket or a lower one."""
    return FIRST if bucket <= 0 else FIRST * GAMMA**bucket


def value_of(bucket: int) -> float:
    """The latency a bucket is read as: within ACCURACY of every latency it holds (bucket 0: FIRST)."""
    if bucket <= 0:
        return FIRST
    return FIRST * GAMMA**bucket * _MIDPOINT


def percentile(histogram: Mapping[int, int], q: float) -> float | None:
    """The q-th percentile (0..1, nearest rank) of a sparse {bucket: count} sketch, or None if empty."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return value_of(bucket)
    return value_of(max(histogram))


def merge(into: dict[int, int], other: Mapping[int, int]) -> dict[int, int]:
    """Add one sparse sketch into another, in place; returns it."""
    for bucket, count in other.items():
        into[bucket] = into.get(bucket, 0) + count
    return into


def encode(histogram: Mapping[int, int], bins: int = WIRE_BINS) -> list[int]:
    """The wire form: `[k0, n0, k1-k0, n1, k2-k1, n2, ...]` for the non-empty buckets in order.

    Small integers are one msgpack byte each, so a sketch costs about two bytes a bin. Past
    `bins` bins the lowest are folded into the lowest one kept (DDSketch's collapsing): the
    size is bounded and the upper percentiles stay exact to ACCURACY."""
    buckets = sorted(b for b, n in histogram.items() if n > 0)
    if not buckets:
        return []
    counts = [histogram[b] for b in buckets]
    if len(buckets) > bins:
        cut = len(buckets) - bins
        folded = sum(counts[: cut + 1])
        buckets, counts = buckets[cut:], [folded, *counts[cut + 1 :]]
    out = [buckets[0], counts[0]]
    previous = buckets[0]
    for bucket, count in zip(buckets[1:], counts[1:]):
        out += (bucket - previous, count)
        previous = bucket
    return out


def decode(pairs: Iterable[int]) -> dict[int, int]:
    """The sparse sketch back from `encode`'s list (unchecked: the viewer's schema checks it first)."""
    values = list(pairs)
    out: dict[int, int] = {}
    bucket = 0
    for index in range(0, len(values) - 1, 2):
        bucket = values[index] if index == 0 else bucket + values[index]
        out[bucket] = values[index + 1]
    return out


def from_legacy(histogram: Mapping[int, int]) -> dict[int, int]:
    """An older job's coarse histogram as a sketch: each bucket at its upper bound, as it was read then."""
    out: dict[int, int] = {}
    for bucket, count in histogram.items():
        fine = bucket_of(FIRST * LEGACY_GROWTH**bucket)
        out[fine] = out.get(fine, 0) + count
    return out
