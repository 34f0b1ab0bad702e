"""What an attached job did before `dspy-top attach`, and runs joined mid-way: recorder, model, batch output.

Pure tests on a fake clock and scripted messages; the real jobs are in test_attach.py.
"""

from __future__ import annotations

from dspy_top.instrumentation.recorder import Recorder
from dspy_top.instrumentation.stats_frame import BEFORE_ATTACH
from dspy_top.instrumentation.tally import Tally
from dspy_top.model import Fleet
from dspy_top.model.before_attach import BeforeAttach, combined
from dspy_top.viewer.batch import snapshot_json, snapshot_text
from dspy_top.viewer.components.header import Header
from dspy_top.viewer.components.optimizer_summary import OptimizerSummary
from dspy_top.viewer.optimizer_report import optimizers_json, optimizers_text
from tests.helpers.model_messages import MIPRO, Clock, counters, fleet_with, hello, module, runs_of, scope, stats

SUMMARY = {
    "at": 995.0,
    "source": "history",
    "calls": 412,
    "history": "complete",
    "missing": 0,
    "in_flight": 3,
    "in_flight_counted": 3,
    "settled": True,
    "first_at": 900.0,
    "last_at": 994.0,
}


def test_the_recorder_puts_history_counts_in_the_totals_and_the_summary_in_stats():
    recorder = Recorder(clock=lambda: 1000.0)
    part = Tally()
    part.calls, part.prompt_tokens, part.completion_tokens, part.cost_usd = 412, 40_000, 5_000, 0.25
    recorder.add_before_attach("openai/gpt-4o-mini", part, dict(SUMMARY))
    stats_frame = recorder.stats()
    assert stats_frame["totals"]["calls"] == 412 and stats_frame["totals"]["cost_usd"] == 0.25
    assert [m["path"] for m in stats_frame["modules"]] == [BEFORE_ATTACH]
    assert stats_frame["models"][0]["calls"] == 412
    assert stats_frame["before_attach"]["calls"] == 412
    recorder.add_before_attach(None, None, {**SUMMARY, "missing": 2})  # the summary alone changes later
    assert recorder.stats()["before_attach"]["missing"] == 2 and recorder.stats()["totals"]["calls"] == 412
    assert "before_attach" not in Recorder().stats()  # a job instrumented from its start sends nothing new


def test_the_summary_says_what_may_be_missing():
    assert BeforeAttach.from_wire(SUMMARY).describe() == "412 calls before attach, from DSPy's history"
    assert BeforeAttach.from_wire(SUMMARY).short() == "412 before attach"
    missing = BeforeAttach.from_wire({**SUMMARY, "missing": 2})
    assert missing.describe().endswith("(2 may be missing)") and missing.short() == "412+ before attach"
    capped = BeforeAttach.from_wire({**SUMMARY, "calls": 10_000, "history": "capped", "missing": None})
    assert (
        capped.describe()
        == "10,000 calls before attach, from DSPy's history (it was full: older calls are not counted)"
    )
    off = BeforeAttach.from_wire({**SUMMARY, "calls": 0, "history": "disabled", "missing": None})
    assert off.describe() == "calls before attach unknown (DSPy's history is off)" and off.short() == "? before attach"
    running = BeforeAttach.from_wire({**SUMMARY, "in_flight": 8, "in_flight_counted": 5, "settled": False})
    assert running.describe().endswith("(+3 in flight then, counted as they end)")
    assert combined([None]) is None
    assert (
        combined([BeforeAttach.from_wire(SUMMARY), capped])
        == "10,412+ calls before attach in 2 processes, from DSPy's history"
    )


def attached_fleet():
    clock = Clock(1000.0)
    fleet = Fleet(clock)
    fleet.attach("k", 7)
    fleet.connected("k", hello(7))
    totals = counters(calls=500, prompt=50_000, completion=6_000, cost=0.3)
    frame = stats(
        totals,
        modules=[
            module(BEFORE_ATTACH, ["DSPy history"], calls=412, prompt=40_000, completion=5_000, cost=0.25),
            module("RAG.answer", ["RAG", "Predict"], calls=88, prompt=10_000, completion=1_000, cost=0.05),
        ],
    )
    frame["before_attach"] = dict(SUMMARY)
    fleet.fold("k", frame)
    return fleet


def test_batch_text_json_and_header_show_the_calls_before_the_attach():
    fleet = attached_fleet()
    snapshot = fleet.snapshot()
    assert "Attached: pid 7: 412 calls before attach, from DSPy's history" in snapshot_text(snapshot)
    process = snapshot_json(snapshot)["processes"][0]
    assert process["before_attach"]["calls"] == 412 and process["before_attach"]["missing"] == 0
    assert process["calls"] == 500  # the totals hold them
    assert any("412 calls before attach" in segment.plain for segment in Header.segments(snapshot))
    assert snapshot_json(Fleet(Clock(1000.0)).snapshot())["processes"] == []


def test_detach_ends_the_process_row_as_detached_not_exited():
    fleet = attached_fleet()
    fleet.fold("k", {"t": "exit", "at": 1001.0, "detached": True, "stats": None})
    row = fleet.snapshot().processes[0]
    assert row.state == "ended" and row.status.startswith("detached")


JOINED_MIPRO = dict(MIPRO, joined={"at": 950.0, "missed": 4, "trial": 5})


def test_a_joined_run_numbers_its_trials_after_the_ones_it_missed():
    fleet, _ = fleet_with(
        scope("compile-1", "compile", 950.0, **JOINED_MIPRO),
        scope(
            "eval-2",
            "eval",
            950.0,
            parent="compile-1",
            total=20,
            done=6,
            score_sum=3.0,
            joined={"at": 950.0, "usage": "unknown"},
        ),
        scope(
            "eval-2",
            "eval",
            950.0,
            parent="compile-1",
            state="done",
            end=955.0,
            total=20,
            done=20,
            score_sum=12.0,
            score=60.0,
            joined={"at": 950.0, "usage": "unknown"},
        ),
        scope(
            "eval-3",
            "eval",
            956.0,
            parent="compile-1",
            total=20,
            done=5,
            score_sum=4.0,
            usage=counters(calls=5, prompt=500, completion=50, cost=0.01),
        ),
    )
    run = runs_of(fleet)["compile-1"]
    assert run.joined and run.missed_trials == 4
    assert [t.number for t in run.trials] == [4, 5]  # MIPROv2 numbers its baseline 0: evaluations 0-3 missed
    assert run.trials[0].kind != "baseline"
    assert run.phase == "trial 5"
    report = optimizers_json(fleet.snapshot())[0]
    assert report["joined_at"] == 950.0 and report["missed_trials"] == 4
    joined_trial, seen_trial = report["trials"]
    assert joined_trial["joined"] and joined_trial["calls"] is None and joined_trial["cost_usd"] is None
    assert joined_trial["score"] == 60.0
    assert seen_trial["calls"] == 5 and not seen_trial["joined"]
    text = "\n".join(optimizers_text(fleet.snapshot()))
    assert "its first 4 evaluations (before the attach) were not seen; trials from 4 on are" in text
    # The live view's run summary says the same under the trial table.
    assert "its first 4 evaluations (before the attach) were not seen" in OptimizerSummary.render_text(run, 120).plain


def test_a_joined_run_that_missed_an_unknown_number_of_trials_projects_nothing():
    fleet, _ = fleet_with(
        scope("compile-1", "compile", 950.0, **dict(MIPRO, joined={"at": 950.0, "missed": None})),
        scope(
            "eval-2",
            "eval",
            951.0,
            parent="compile-1",
            total=20,
            done=10,
            score_sum=5.0,
            usage=counters(calls=10, cost=0.01),
        ),
    )
    run = runs_of(fleet)["compile-1"]
    assert run.missed_trials is None and run.cost_to_finish is None and run.time_to_finish is None
    assert [t.number for t in run.trials] == [0]
    assert "earlier trials were not seen (how many is unknown)" in "\n".join(optimizers_text(fleet.snapshot()))


def test_an_evaluation_joined_mid_way_has_unknown_usage_never_zero():
    fleet, _ = fleet_with(
        scope(
            "eval-1",
            "eval",
            950.0,
            total=100,
            done=40,
            score_sum=20.0,
            program="Predict",
            joined={"at": 950.0, "usage": "unknown"},
        )
    )
    run = runs_of(fleet)["eval-1"]
    assert not run.usage_known and run.cost_to_finish is None
    report = optimizers_json(fleet.snapshot())[0]
    assert report["calls"] is None and report["cost_usd"] is None and report["cost_known"] is False
    line = next(line for line in optimizers_text(fleet.snapshot()) if line.startswith("Evaluate"))
    assert " ? " in line
