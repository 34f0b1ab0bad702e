"""The viewer's aggregation, pure: messages in, snapshot out, on a fake clock."""

from __future__ import annotations

import pytest

from dspy_top.model import CallQuery, Fleet, flatten
from dspy_top.model.calls import CallSummary, History
from dspy_top.model.counters import Counters, total
from dspy_top.model.rates import BucketSeries, RateWindow
from dspy_top.protocol import CALL_FIELDS
from dspy_top.viewer import format as fmt
from dspy_top.viewer.optimizer_report import optimizer_line
from tests.helpers.model_messages import Clock, attach, call, counters, hello, module, stats


def test_totals_come_from_stats_frames_not_from_summing_call_events():
    clock = Clock()
    fleet = Fleet(clock)
    attach(fleet, "a", 1, stats(counters()))
    # Only two call events arrive (the others were dropped), but the stats frame is exact.
    fleet.fold("a", call(1))
    fleet.fold("a", call(2))
    fleet.fold("a", stats(counters(calls=5, prompt=500, completion=50, cost=0.005), dropped=3))
    snapshot = fleet.snapshot()
    assert snapshot.totals.calls == 5
    assert snapshot.totals.prompt_tokens == 500
    assert snapshot.totals.cost_usd == pytest.approx(0.005)
    assert snapshot.dropped == 3
    assert len(snapshot.calls) == 2


def test_calls_are_deduplicated_by_process_and_id_across_snapshot_and_stream():
    fleet = Fleet(Clock())
    attach(fleet, "a", 1, stats(counters(calls=2)), calls=[call(1), call(2, start=1_001.0)])
    fleet.fold("a", call(2, start=1_001.0))
    fleet.fold("a", call(3, start=1_002.0))
    fleet.fold("a", stats(counters(calls=3)))  # the history shows a call once a stats frame counts it
    attach(fleet, "b", 2, stats(counters(calls=1)), calls=[call(1, start=999.0)])  # same id, other process
    snapshot = fleet.snapshot()
    assert [(c.pid, c.id) for c in snapshot.calls] == [(2, 1), (1, 1), (1, 2), (1, 3)]  # time order
    assert snapshot.history_size == 4


def batch(calls, fields=None, extra=None):
    """The `calls` message a process sends for these call events (CALL_FIELDS columns by default)."""
    fields = list(fields or CALL_FIELDS)
    rows = [[c.get(f) for f in fields] for c in calls]
    if extra:
        fields.append(extra)
        rows = [row + ["new"] for row in rows]
    return {"t": "calls", "fields": fields, "rows": rows}


def test_a_calls_batch_folds_exactly_like_its_call_events():
    events = [
        call(1, error="Timeout"),
        call(2, cache_hit=True, cost=0.0, start=1_001.0),
        {**call(3, path="Judge", start=1_002.0), "scopes": ["eval-1"]},
    ]
    one_by_one, batched = Fleet(Clock()), Fleet(Clock())
    for fleet in (one_by_one, batched):
        attach(fleet, "a", 1, stats(counters()))
    for event in events:
        one_by_one.fold("a", event)
    batched.fold("a", batch(events, extra="a_column_from_a_newer_process"))
    assert batched.snapshot().calls == ()  # shown once a stats frame counts them
    for fleet in (one_by_one, batched):
        fleet.fold("a", stats(counters(calls=3)))
    assert batched.snapshot().calls == one_by_one.snapshot().calls
    assert [c.id for c in batched.snapshot().calls] == [1, 2, 3]
    assert batched.events == one_by_one.events == 1 + 3 + 1  # the snapshot, each call, the stats frame

    # Columns a process did not send read as unknown; a batch without ids, or with a short row, is refused.
    fleet = Fleet(Clock())
    attach(fleet, "a", 1, stats(counters()))
    fleet.fold("a", batch([call(7)], fields=["id", "start", "path"]))
    fleet.fold("a", stats(counters(calls=1)))
    (only,) = fleet.snapshot().calls
    assert (only.id, only.path, only.cost_usd, only.model) == (7, "RAG.answer", None, "?")
    fleet.fold("a", batch([call(8)], fields=["start", "path"]))
    fleet.fold("a", {"t": "calls", "fields": list(CALL_FIELDS), "rows": [[1, 2]]})
    assert "malformed 'calls'" in fleet.processes["a"].status
    assert len(fleet.snapshot().calls) == 1


def test_history_is_bounded_and_forgets_evicted_keys():
    history = History(capacity=3)
    for i in range(5):
        history.add(CallSummary.from_wire("a", 1, call(i, start=1_000.0 + i)))
    assert [c.id for c in history] == [2, 3, 4]
    assert history.add(CallSummary.from_wire("a", 1, call(0)))  # evicted: may come back
    assert not history.add(CallSummary.from_wire("a", 1, call(4)))
    assert history.recent(2) == tuple(list(history)[-2:])


def test_tokens_per_sec_now_and_on_average_with_a_fake_clock():
    clock = Clock(1_000.0)
    fleet = Fleet(clock, window=5.0)
    # Attaching late: the snapshot's 10,000 tokens are the baseline, not a burst.
    attach(fleet, "a", 1, stats(counters(calls=100, prompt=9_000, completion=1_000)))
    assert fleet.snapshot().tokens_per_sec == 0
    for second in range(1, 6):
        clock.advance(1.0)
        fleet.fold(
            "a",
            stats(
                counters(
                    calls=100 + second, prompt=9_000 + 400 * second, completion=1_000 + 100 * second, cost=0.01 * second
                )
            ),
        )
    snapshot = fleet.snapshot()
    assert snapshot.tokens_per_sec == pytest.approx(500.0)
    assert snapshot.cost_per_min == pytest.approx(0.6)
    # Average over the whole uptime: the process started at 990, now is 1005.
    assert snapshot.tokens_per_sec_avg == pytest.approx(12_500 / 15)
    # Sparklines draw finished buckets only: the one at 1005 is still filling.
    assert snapshot.token_series[-5:] == (0.0,) + (500.0,) * 4
    assert sum(snapshot.token_series) == pytest.approx(2_000)
    clock.advance(1.0)
    assert fleet.snapshot().token_series[-5:] == (500.0,) * 5
    # Quiet for longer than the window: the current rate falls to zero.
    clock.advance(6.0)
    fleet.fold("a", stats(counters(calls=105, prompt=11_000, completion=1_500, cost=0.05)))
    assert fleet.snapshot().tokens_per_sec == 0


def test_rates_of_several_processes_add_up():
    clock = Clock()
    fleet = Fleet(clock)
    attach(fleet, "a", 1, stats(counters()))
    attach(fleet, "b", 2, stats(counters()))
    clock.advance(2.0)
    fleet.fold("a", stats(counters(calls=1, prompt=100)))
    fleet.fold("b", stats(counters(calls=1, prompt=300)))
    snapshot = fleet.snapshot()
    assert snapshot.tokens_per_sec == pytest.approx(200.0)
    assert snapshot.totals.calls == 2
    assert fleet.snapshot(focus="b").tokens_per_sec == pytest.approx(150.0)
    assert fleet.snapshot(focus="b").totals.prompt_tokens == 300


def test_percentiles_merge_histograms_across_processes():
    fleet = Fleet(Clock())
    attach(fleet, "a", 1, stats(counters(calls=90, latencies=[0.1] * 90)))
    attach(fleet, "b", 2, stats(counters(calls=10, latencies=[5.0] * 10)))
    totals = fleet.snapshot().totals
    assert totals.p50 == pytest.approx(0.1, rel=0.2)
    assert totals.p95 == pytest.approx(5.0, rel=0.2)
    assert Counters().p95 is None


def test_module_tree_aggregates_parents_and_names_classes_from_the_chain():
    clock = Clock()
    fleet = Fleet(clock)
    attach(
        fleet,
        "a",
        1,
        stats(
            counters(calls=3, cost=0.3),
            modules=[
                module(
                    "RAG.generate_query.predict",
                    ("RAG", "ChainOfThought", "Predict"),
                    calls=2,
                    cost=0.2,
                    prompt=20,
                    last_at=clock.now - 1,
                    latencies=[0.1, 0.2],
                ),
                module(
                    "RAG.answer",
                    ("RAG", "Predict"),
                    calls=1,
                    cost=0.1,
                    prompt=10,
                    last_at=clock.now - 100,
                    latencies=[1.0],
                ),
                module("(direct)", ("(direct)",), calls=1, unpriced=1, prompt=5),
            ],
        ),
    )
    roots = {node.path: node for node in fleet.snapshot().modules}
    rag = roots["RAG"]
    assert rag.own is None and rag.counters.calls == 3
    assert rag.counters.cost_usd == pytest.approx(0.3)
    assert sum(rag.counters.latency_hist.values()) == 3
    query = next(c for c in rag.children if c.name == "generate_query")
    assert query.class_name == "ChainOfThought"
    assert query.children[0].path == "RAG.generate_query.predict"
    assert query.active and not next(c for c in rag.children if c.name == "answer").active
    assert roots["(direct)"].counters.unpriced_calls == 1

    rows = flatten(fleet.snapshot().modules, sort="cost")
    assert [r.node.path for r in rows] == [
        "RAG",
        "RAG.generate_query",
        "RAG.generate_query.predict",
        "RAG.answer",
        "(direct)",
    ]
    # The line of a branch that goes on runs down past its children (`│`), as `tree` draws it.
    assert [r.guide for r in rows] == ["▾ ", "├▾", "│ └─", "└─", "  "]
    rows = flatten(fleet.snapshot().modules, sort="calls", descending=False, collapsed={"RAG.generate_query"})
    assert [r.node.path for r in rows] == ["(direct)", "RAG", "RAG.answer", "RAG.generate_query"]
    flat = flatten(fleet.snapshot().modules, tree=False, sort="module", descending=False)
    assert [r.node.path for r in flat] == ["(direct)", "RAG.answer", "RAG.generate_query.predict"]
    kept = flatten(fleet.snapshot().modules, keep=CallQuery("predict").matches_module, collapsed={"RAG"})
    assert [r.node.path for r in kept] == ["RAG", "RAG.generate_query", "RAG.generate_query.predict"]


def test_models_merge_across_processes_and_unknown_cost_is_never_zero():
    fleet = Fleet(Clock())
    attach(
        fleet,
        "a",
        1,
        stats(counters(calls=2, cost=0.02), models=[{"model": "openai/gpt-4o-mini", **counters(calls=2, cost=0.02)}]),
    )
    attach(
        fleet,
        "b",
        2,
        stats(
            counters(calls=4, cost=0.01, unpriced=3),
            models=[
                {"model": "openai/gpt-4o-mini", **counters(calls=1, cost=0.01)},
                {"model": "local/llama", **counters(calls=3, prompt=30, unpriced=3)},
            ],
        ),
    )
    snapshot = fleet.snapshot()
    models = {row.model: row.counters for row in snapshot.models}
    assert models["openai/gpt-4o-mini"].calls == 3
    assert fmt.cost(models["openai/gpt-4o-mini"]) == "$0.03"
    assert fmt.cost(models["local/llama"]) == "?"
    assert fmt.cost(snapshot.totals) == "$0.03+?"
    assert fmt.call_cost(None) == "?"


def test_exit_keeps_final_numbers_until_dismissed():
    clock = Clock()
    fleet = Fleet(clock)
    attach(fleet, "a", 1, stats(counters(calls=1, in_flight=1)))
    assert not fleet.dismiss("a")  # a live process cannot be dismissed
    clock.advance(3)
    fleet.fold("a", {"t": "exit", "at": clock.now, "stats": stats(counters(calls=2, in_flight=1))})
    fleet.failed("a", "the process closed the connection")
    row = fleet.snapshot().processes[0]
    assert row.state == "ended" and row.totals.calls == 2 and row.totals.in_flight == 0
    clock.advance(100)
    assert fleet.snapshot().uptime == pytest.approx(13.0)  # frozen at the end, not growing
    assert fleet.dismiss("a")
    assert fleet.snapshot().processes == ()


def test_a_broken_connection_is_lost_and_a_bad_socket_is_failed_with_its_reason():
    fleet = Fleet(Clock())
    attach(fleet, "a", 1, stats(counters(calls=1)))
    fleet.failed("a", "the process closed the connection")
    fleet.attach("b", 2)
    fleet.failed("b", "process speaks dspy-top protocol version 2; this viewer speaks 1")
    rows = {row.key: row for row in fleet.snapshot().processes}
    assert rows["a"].state == "lost" and "closed" in rows["a"].status
    assert rows["b"].state == "failed" and "version 2" in rows["b"].status
    assert [p.key for p in fleet.snapshot().problems] == ["a", "b"]


def test_a_new_process_on_an_ended_one_s_key_keeps_the_ended_one_apart_with_all_it_had():
    clock = Clock()
    fleet = Fleet(clock)
    attach(fleet, "sock", 1, stats(counters(calls=1)), calls=[call(1)])
    fleet.fold(
        "sock", {"t": "eval_start", "id": "eval-1", "kind": "eval", "start": clock.now, "state": "running", "total": 10}
    )
    fleet.fold(
        "sock",
        {
            "t": "budget",
            "at": 1.0,
            "level": 80,
            "scope": "total",
            "name": "",
            "spent_usd": 0.8,
            "budget_usd": 1.0,
            "action": "warn",
            "message": "dspy-top: total spend passed 80%",
        },
    )
    fleet.fold("sock", {"t": "exit", "at": clock.now, "stats": stats(counters(calls=1))})
    fleet.attach("sock", 2)  # the pid (and so the socket's name) is reused
    old = f"sock#{int(clock.now)}"
    rows = {row.key: row for row in fleet.snapshot().processes}
    assert rows[old].state == "ended" and rows[old].pid == 1 and rows[old].totals.calls == 1
    assert rows["sock"].state == "connecting" and rows["sock"].pid == 2 and rows["sock"].totals.calls == 0
    fleet.connected("sock", hello(2))
    fleet.fold(
        "sock", {"t": "snapshot", "stats": stats(counters(calls=1)), "calls": [call(1, start=1_001.0)], "seq": 1}
    )
    snapshot = fleet.snapshot()
    assert {(c.process, c.pid, c.id) for c in snapshot.calls} == {(old, 1, 1), ("sock", 2, 1)}
    assert [(s.process, s.id) for s in snapshot.scopes] == [(old, "eval-1")]
    assert [(a.process, a.level) for job in snapshot.job_budgets for a in job.alerts] == [(old, "80")]
    fleet.fold("sock", {"t": "exit", "at": clock.now, "stats": stats(counters(calls=1))})
    fleet.attach("sock", 3)  # ended the same second as the first: a key of its own still
    assert sorted(row.key for row in fleet.snapshot().processes) == sorted(["sock", old, f"{old}.2"])
    assert fleet.dismiss(old) and [c.process for c in fleet.snapshot().calls] == [f"{old}.2"]


def test_attach_again_retries_a_failed_row_and_leaves_a_running_one_alone():
    fleet = Fleet(Clock())
    fleet.attach("a", 1, "waiting for pid 1 to serve dspy-top")
    assert fleet.snapshot().processes[0].status == "waiting for pid 1 to serve dspy-top"
    assert not fleet.settled()  # on its way in
    fleet.failed("a", "permission denied")
    assert fleet.settled() and fleet.snapshot().processes[0].state == "failed"
    fleet.attach("a", 1)
    (row,) = fleet.snapshot().processes
    assert row.state == "connecting" and row.status == "connecting…"
    fleet.connected("a", hello(1))
    fleet.fold("a", {"t": "snapshot", "stats": stats(counters(calls=2)), "calls": [], "seq": 0})
    assert fleet.settled() and fleet.awaiting_final_numbers()
    fleet.attach("a", 1, "connecting… again?")
    (row,) = fleet.snapshot().processes
    assert row.state == "running" and row.totals.calls == 2 and row.status != "connecting… again?"
    fleet.fold("a", {"t": "exit", "at": 1_000.0, "stats": stats(counters(calls=2))})
    assert not fleet.awaiting_final_numbers()


def test_let_go_drops_a_silent_row_and_keeps_one_that_spoke():
    fleet = Fleet(Clock())
    fleet.attach("wrapper", 1)
    attach(fleet, "job", 2, stats(counters(calls=3)))
    version = fleet.version
    assert fleet.let_go("wrapper") and fleet.version > version
    assert not fleet.let_go("job")
    assert fleet.let_go("never-seen")
    assert [(row.key, row.totals.calls) for row in fleet.snapshot().processes] == [("job", 3)]


def test_a_refused_process_says_protocol_error_and_keeps_its_last_numbers():
    fleet = Fleet(Clock())
    attach(fleet, "a", 1, stats(counters(calls=4)))
    fleet.refused("a", "malformed 'calls' message: fields is 'nonsense'")
    (row,) = fleet.snapshot().processes
    assert row.state == "lost" and row.totals.calls == 4 and row.final_numbers == "not received"
    assert row.status.startswith("protocol error: malformed 'calls' message")


def test_module_chains_name_each_path_s_classes():
    fleet = Fleet(Clock())
    attach(
        fleet,
        "a",
        1,
        stats(counters(calls=1), modules=[module("RAG.answer.predict", ("RAG", "ChainOfThought", "Predict"), calls=1)]),
    )
    assert fleet.module_chains() == {"RAG.answer.predict": ("RAG", "ChainOfThought", "Predict")}


def test_malformed_messages_are_skipped_with_a_status_never_raised():
    fleet = Fleet(Clock())
    attach(fleet, "a", 1, stats(counters(calls=1)))
    fleet.fold("a", {"t": "stats", "totals": {"calls": "many"}})
    fleet.fold("a", {"t": "call", "start": 1.0})
    fleet.fold("a", {"t": "something-new", "x": 1})
    process = fleet.processes["a"]
    assert "malformed" in process.status
    assert fleet.snapshot().totals.calls == 1


def test_scopes_give_a_one_line_progress_summary():
    clock = Clock()
    fleet = Fleet(clock)
    attach(fleet, "a", 1, stats(counters()))
    fleet.fold(
        "a",
        {
            "t": "compile_start",
            "id": "compile-1",
            "kind": "compile",
            "start": clock.now - 72,
            "state": "running",
            "class": "MIPROv2",
        },
    )
    fleet.fold(
        "a",
        {
            "t": "eval_start",
            "id": "eval-1",
            "kind": "eval",
            "start": clock.now,
            "state": "running",
            "total": 100,
            "parent": "compile-1",
        },
    )
    fleet.fold("a", {"t": "eval_progress", "id": "eval-1", "done": 37, "score_sum": 29.0})
    line = optimizer_line(fleet.snapshot().optimizers, clock.now)
    assert line.startswith("MIPROv2 baseline evaluation · 1:12")  # MIPROv2's first evaluation is its baseline
    assert "eval 37/100 · 78.4%" in line
    fleet.fold(
        "a",
        {
            "t": "eval_end",
            "id": "eval-1",
            "kind": "eval",
            "state": "done",
            "score": 80.0,
            "end": clock.now,
            "usage": counters(calls=74),
        },
    )
    fleet.fold("a", {"t": "compile_end", "id": "compile-1", "kind": "compile", "state": "done", "end": clock.now})
    snapshot = fleet.snapshot()
    assert optimizer_line(snapshot.optimizers, snapshot.at) is None
    assert {s.id: s.usage.calls for s in snapshot.scopes}["eval-1"] == 74


def test_call_query_filters_by_module_model_pid_and_words():
    summary = CallSummary.from_wire("a", 7, call(1, path="RAG.answer", error="RateLimitError"))
    assert CallQuery("module:answer").matches(summary)
    assert not CallQuery("module:judge").matches(summary)
    assert CallQuery("model:mini err").matches(summary)
    assert CallQuery("pid:7 ratelimit").matches(summary)
    assert not CallQuery("pid:8").matches(summary)
    assert not CallQuery("cache").matches(summary)


def test_rate_window_and_buckets():
    window = RateWindow(5.0)
    window.observe(0.0, 0)
    window.observe(1.0, 10)
    assert window.rate(1.0) == pytest.approx(10.0)
    assert window.rate(7.0) == 0.0
    series = BucketSeries(width=1.0, length=4)
    series.add(10.2, 3)
    series.add(10.7, 2)
    series.add(12.1, 1)
    assert series.series(12.5) == [0.0, 0.0, 5.0, 0.0]  # finished buckets: 12 is still filling
    assert series.series(13.0) == [0.0, 5.0, 0.0, 1.0]
    assert total([Counters(calls=1, last_at=2.0), Counters(calls=2, last_at=5.0)]).last_at == 5.0


def test_formatting_helpers():
    assert fmt.tokens(1_920_000) == "1.92M"
    assert fmt.tokens(188_000) == "188K"
    assert fmt.dollars(2.874) == "$2.87"
    assert fmt.dollars(0.0000322) == "$0.000032"
    assert fmt.seconds(1.1) == "1.1s" and fmt.seconds(0.012) == "12ms" and fmt.seconds(None) == "-"
    # Rounding never carries a value into a form of the wrong unit: not 1000ms, not 60.0s.
    assert fmt.seconds(0.9996) == "1.0s" and fmt.seconds(0.9994) == "999ms"
    assert fmt.seconds(59.97) == "1m00s" and fmt.seconds(59.94) == "59.9s" and fmt.seconds(125.6) == "2m06s"
    assert fmt.dollars(0.000995) == "$0.0010" and fmt.dollars(0.00996) == "$0.01" and fmt.dollars(0.0099) == "$0.0099"
    assert fmt.dollars(99.996) == "$100" and fmt.dollars(0.000032) == "$0.000032" and fmt.dollars(2.87) == "$2.87"
    assert fmt.rate(9_999.7) == "10.0K" and fmt.rate(9_999.4) == "9,999" and fmt.rate(4.24) == "4.2"
    assert fmt.uptime(847) == "00:14:07"
    assert fmt.sparkline([0, 1, 2, 4], 4) == "▁▃▅█"
