"""Latency sketches: every percentile within 1% of the exact one, mergeable, bounded on the wire (issue 18)."""

from __future__ import annotations

import math
import random

import msgpack
import pytest

from dspy_top import latency, schema
from dspy_top.instrumentation.recorder import Recorder
from dspy_top.model.counters import Counters
from dspy_top.schema import stats_frame


def exact(values: list[float], q: float) -> float:
    """Nearest-rank percentile, the definition the sketch follows."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def sketch_of(values) -> dict[int, int]:
    hist: dict[int, int] = {}
    for value in values:
        bucket = latency.bucket_of(value)
        hist[bucket] = hist.get(bucket, 0) + 1
    return hist


DISTRIBUTIONS = {
    "lognormal LM calls": lambda rng: rng.lognormvariate(math.log(0.9), 0.6),
    "bimodal: cache hits and slow calls": lambda rng: (
        rng.uniform(0.0, 0.0008) if rng.random() < 0.4 else rng.uniform(2.0, 9.0)
    ),
    "narrow around 431 ms": lambda rng: rng.gauss(0.431, 0.01),
    "long tail": lambda rng: 0.2 + rng.paretovariate(1.5),
}


@pytest.mark.parametrize("name", list(DISTRIBUTIONS))
def test_every_percentile_is_within_one_percent_of_the_exact_one(name):
    rng = random.Random(name)
    values = [max(0.0, DISTRIBUTIONS[name](rng)) for _ in range(5000)]
    hist = sketch_of(values)
    for q in (0.01, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0):
        truth = exact(values, q)
        got = latency.percentile(hist, q)
        if truth <= latency.FIRST:
            assert got == latency.FIRST  # under 1 ms reads as "1 ms": cache hits
        else:
            assert got == pytest.approx(truth, rel=latency.ACCURACY), (q, truth, got)


def test_merged_sketches_equal_the_sketch_of_all_values():
    rng = random.Random(7)
    a = [rng.uniform(0.05, 0.3) for _ in range(900)]
    b = [rng.uniform(3.0, 6.0) for _ in range(100)]
    merged = latency.merge(sketch_of(a), sketch_of(b))
    assert merged == sketch_of(a + b)
    assert latency.percentile(merged, 0.95) == pytest.approx(exact(a + b, 0.95), rel=latency.ACCURACY)


def test_the_wire_form_round_trips_and_stays_small():
    rng = random.Random(3)
    values = [rng.lognormvariate(0.0, 0.8) for _ in range(20_000)]
    hist = sketch_of(values)
    wire = latency.encode(hist)
    assert latency.decode(wire) == hist
    assert stats_frame.counters({"calls": len(values), "latency_sketch": wire}, "totals").latency_hist == hist
    # About two bytes a bin: a wide, busy distribution stays well under a kilobyte.
    assert len(msgpack.packb(wire)) < 3 * len(hist) + 8 < 1200


def test_past_the_bin_limit_the_fastest_bins_fold_together_and_the_slow_percentiles_stay_exact():
    values = [latency.FIRST * latency.GAMMA**k for k in range(1, 900)]  # one call in each of 899 buckets
    hist = sketch_of(values)
    wire = latency.encode(hist, bins=100)
    folded = latency.decode(wire)
    assert len(folded) == 100 and sum(folded.values()) == len(values)
    for q in (0.95, 0.99):
        assert latency.percentile(folded, q) == pytest.approx(exact(values, q), rel=latency.ACCURACY)
    assert len(latency.encode(hist)) <= 2 * latency.WIRE_BINS


def test_an_older_jobs_coarse_histogram_reads_as_it_did():
    legacy = {40: 3, 44: 1}  # bucket k held latencies up to 1 ms * 2**(k/4)
    counters = stats_frame.counters({"calls": 4, "latency_hist": legacy}, "totals")
    assert sum(counters.latency_hist.values()) == 4
    assert latency.percentile(counters.latency_hist, 0.5) == pytest.approx(0.001 * 2**10, rel=latency.ACCURACY)
    assert latency.percentile(counters.latency_hist, 1.0) == pytest.approx(0.001 * 2**11, rel=latency.ACCURACY)


def test_a_jobs_percentiles_reach_the_viewer_within_one_percent():
    """Recorder (the job) → stats frame → schema → the viewer's Counters, with exact latencies known."""

    class Clock:
        now = 1000.0

        def __call__(self):
            return self.now

    clock = Clock()
    recorder = Recorder(history_capacity=10, queue_capacity=10, clock=clock, perf=clock)
    rng = random.Random(11)
    latencies = [rng.lognormvariate(math.log(0.43), 0.35) for _ in range(700)]
    for value in latencies:
        record = recorder.begin("RAG.answer", "Predict", ("RAG", "Predict"), "openai/gpt-4o-mini")
        clock.now += value
        recorder.finish(record, prompt_tokens=10, completion_tokens=2, cost=0.0001)
    wire = msgpack.unpackb(msgpack.packb(recorder.stats()), strict_map_key=False)
    record = schema.parse({"t": "stats", **wire})
    module = Counters.from_record(record.modules[0].counters)
    for counters in (Counters.from_record(record.totals), module):
        assert counters.p50 == pytest.approx(exact(latencies, 0.5), rel=latency.ACCURACY)
        assert counters.p95 == pytest.approx(exact(latencies, 0.95), rel=latency.ACCURACY)
