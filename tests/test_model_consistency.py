"""One consistent picture (issue 18): the history never runs ahead of the totals, rates are the job's own
from the first frame, generation speed per model, and an ended job's modules are idle at once."""

from __future__ import annotations

import pytest

from dspy_top.model import Fleet
from tests.helpers.model_messages import Clock, attach, call, counters, module, stats


def test_the_history_shows_a_call_once_a_stats_frame_counts_it():
    clock = Clock()
    fleet = Fleet(clock)
    attach(fleet, "a", 1, stats(counters(calls=2)), calls=[call(1), call(2, start=1_000.5)])
    assert fleet.snapshot().totals.calls == len(fleet.snapshot().calls) == 2
    # Call events arrive before the stats frame that counts them: held back until it comes.
    fleet.fold("a", call(3, start=1_001.0))
    fleet.fold("a", call(4, start=1_001.5))
    snapshot = fleet.snapshot()
    assert snapshot.totals.calls == 2 and snapshot.history_size == 2 and len(snapshot.calls) == 2
    fleet.fold("a", stats(counters(calls=4)))
    snapshot = fleet.snapshot()
    assert snapshot.totals.calls == snapshot.history_size == 4
    assert [c.id for c in snapshot.calls] == [1, 2, 3, 4]


def test_a_broken_stream_keeps_the_calls_it_sent():
    fleet = Fleet(Clock())
    attach(fleet, "a", 1, stats(counters(calls=1)), calls=[call(1)])
    fleet.fold("a", call(2, start=1_001.0))
    fleet.failed("a", "connection reset")
    assert [c.id for c in fleet.snapshot().calls] == [1, 2]


def test_a_late_viewer_reads_the_jobs_recent_rate_from_its_first_frame():
    """`dspy-top -b -n 1` on a busy job: the snapshot's recent calls give the rates, not 0."""
    clock = Clock(1_000.0)
    fleet = Fleet(clock, window=5.0)
    # 40 calls in the last 4 seconds, 100 in + 25 out tokens each, $0.001 each; the job started at 990.
    calls = [
        call(
            i,
            start=996.0 + i * 0.1 - 0.5,
            latency_s=0.5,
            prompt=100,
            completion=25,
            cost=0.001,
            model="openai/gpt-4o-mini" if i % 2 else "openai/gpt-4o",
            path="RAG.answer" if i % 2 else "Judge",
        )
        for i in range(40)
    ]
    tokens = 125 * 40
    attach(
        fleet,
        "a",
        1,
        stats(
            counters(calls=40, prompt=4_000, completion=1_000, cost=0.04),
            modules=[
                module("RAG.answer", ("RAG", "Predict"), calls=20, prompt=2_000, completion=500),
                module("Judge", ("Judge",), calls=20, prompt=2_000, completion=500),
            ],
            models=[
                {"model": "openai/gpt-4o-mini", **counters(calls=20, prompt=2_000, completion=500)},
                {"model": "openai/gpt-4o", **counters(calls=20, prompt=2_000, completion=500)},
            ],
        ),
        calls=calls,
    )
    snapshot = fleet.snapshot()
    # Every call ended within the 5 s window: the rate is their tokens over it.
    assert snapshot.tokens_per_sec == pytest.approx(tokens / 5.0)
    assert snapshot.output_tokens_per_sec == pytest.approx(1_000 / 5.0)
    assert snapshot.cost_per_min == pytest.approx(60 * 0.04 / 5.0)
    models = {row.model: row for row in snapshot.models}
    assert models["openai/gpt-4o"].output_tokens_per_sec == pytest.approx(500 / 5.0)
    assert models["openai/gpt-4o-mini"].tokens_per_sec == pytest.approx(2_500 / 5.0)
    roots = {node.path: node for node in snapshot.modules}
    assert roots["Judge"].tokens_per_sec == pytest.approx(2_500 / 5.0)
    # The sparkline holds those calls too (finished buckets: 995 to 999).
    assert sum(snapshot.token_series) == pytest.approx(tokens)


def test_a_job_attached_right_after_it_started_rates_over_its_life_so_far():
    clock = Clock(1_000.0)
    fleet = Fleet(clock, window=5.0)
    fleet.attach("a", 1)
    from tests.helpers.model_messages import hello

    fleet.connected("a", hello(1, started_at=998.0))
    fleet.fold(
        "a",
        {
            "t": "snapshot",
            "seq": 2,
            "stats": stats(counters(calls=2, prompt=200, completion=40)),
            "calls": [
                call(1, start=998.5, latency_s=0.5, prompt=100, completion=20),
                call(2, start=999.0, latency_s=0.5, prompt=100, completion=20),
            ],
        },
    )
    assert fleet.snapshot().tokens_per_sec == pytest.approx(240 / 2.0)  # over the 2 s it has lived


def test_output_tokens_per_second_per_model_from_stats_frames():
    clock = Clock()
    fleet = Fleet(clock, window=5.0)
    attach(fleet, "a", 1, stats(counters(), models=[{"model": "m", **counters()}]))
    for second in range(1, 4):
        clock.advance(1.0)
        fleet.fold(
            "a",
            stats(
                counters(prompt=900 * second, completion=100 * second),
                models=[{"model": "m", **counters(prompt=900 * second, completion=100 * second)}],
            ),
        )
    snapshot = fleet.snapshot()
    (row,) = snapshot.models
    assert row.tokens_per_sec == pytest.approx(1_000.0) and row.output_tokens_per_sec == pytest.approx(100.0)
    assert snapshot.output_tokens_per_sec == pytest.approx(100.0)


def test_once_a_process_ended_its_modules_are_idle_at_once():
    clock = Clock()
    fleet = Fleet(clock)
    frame = stats(
        counters(calls=3, in_flight=1),
        modules=[module("RAG.answer", ("RAG", "Predict"), calls=3, in_flight=1, last_at=clock.now - 0.5)],
    )
    attach(fleet, "a", 1, frame)
    assert fleet.snapshot().modules[0].active
    fleet.fold("a", {"t": "exit", "at": clock.now, "stats": frame})
    clock.advance(0.1)
    (root,) = fleet.snapshot().modules
    assert not root.active and not root.children[0].active
    assert root.counters.in_flight == 0
