"""Calls whose token usage DSPy did not report: counted, and shown as unknown, never as 0 tokens."""

from __future__ import annotations

import pytest

from dspy_top import schema
from dspy_top.instrumentation.recorder import Recorder
from dspy_top.model.calls import CallSummary
from dspy_top.model.counters import Counters, total
from dspy_top.protocol import CALL_FIELDS, CALLS, call_dicts
from dspy_top.schema import stats_frame
from dspy_top.viewer import format as fmt
from dspy_top.viewer.components.call_view import facts


def test_the_recorder_counts_them_apart_and_marks_their_rows():
    rec = Recorder(queue_capacity=100)
    unknown = rec.begin("P", "Predict", ("P",), "m")
    unknown.usage_known = False
    rec.finish(unknown)
    rec.finish(rec.begin("P", "Predict", ("P",), "m"), prompt_tokens=5, completion_tokens=1, cost=0.1)
    hit = rec.begin("P", "Predict", ("P",), "m")
    rec.finish(hit, cache_hit=True)  # a cache hit bills no tokens: that is known
    totals = rec.stats()["totals"]
    assert (totals["calls"], totals["unmetered_calls"], totals["unpriced_calls"]) == (3, 1, 1)
    assert totals["prompt_tokens"] == 5
    rows = call_dicts(CALL_FIELDS, [e for e in rec.drain() if isinstance(e, tuple)])
    assert [row["usage_known"] for row in rows] == [False, True, True]


def test_the_model_reads_the_column_and_older_processes_without_it():
    fields = list(CALL_FIELDS)
    row = [None] * len(fields)
    for name, value in {
        "seq": 1,
        "id": 7,
        "start": 1.0,
        "latency": 0.5,
        "path": "P",
        "model": "m",
        "cache_hit": False,
        "retries": 0,
        "usage_known": False,
    }.items():
        row[fields.index(name)] = value
    (checked,) = schema.parse({"t": CALLS, "fields": fields, "rows": [row]}).rows
    assert CallSummary.from_row("sock", 1, checked).usage_known is False
    older = [name for name in fields if name != "usage_known"]
    (checked,) = schema.parse(
        {"t": CALLS, "fields": older, "rows": [[v for n, v in zip(fields, row) if n != "usage_known"]]}
    ).rows
    assert CallSummary.from_row("sock", 1, checked).usage_known is True
    assert CallSummary.from_wire("sock", 1, {"id": 7}).usage_known is True
    with pytest.raises(schema.BadMessage):
        schema.parse({"t": CALLS, "fields": fields, "rows": [[*row[:-1], "maybe"]]})


def test_counters_say_their_tokens_are_a_lower_bound():
    known = Counters.from_record(stats_frame.counters({"calls": 2, "prompt_tokens": 1200}, "test"))
    unknown = Counters.from_record(stats_frame.counters({"calls": 1, "unmetered_calls": 1}, "test"))
    both = total([known, unknown])
    assert known.tokens_known and not unknown.tokens_known and not both.tokens_known
    assert both.to_json()["tokens_known"] is False and both.to_json()["unmetered_calls"] == 1
    assert fmt.token_count(known, known.prompt_tokens) == "1,200"
    assert fmt.token_count(both, both.prompt_tokens) == "1,200+?"


def test_the_call_view_says_unknown_instead_of_zero():
    call = CallSummary.from_wire(
        "sock", 1, {"id": 7, "path": "P", "model": "m", "prompt_tokens": 0, "usage_known": False}
    )
    text = facts(call).plain
    assert "tokens unknown" in text and "0 in" not in text
    known = CallSummary.from_wire("sock", 1, {"id": 8, "path": "P", "model": "m", "prompt_tokens": 0})
    assert "0 in" in facts(known).plain
