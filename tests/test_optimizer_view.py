"""The optimizer view: trials, phase, best score, spend and projection, derived from scopes.

Pure tests fold scripted scope messages on a fake clock; the optimizer screen on a scripted
fleet (snapshots, keys). Real optimizers on the simulated LM: tests/test_optimizer_runs.py.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from dspy_top.model import CallQuery
from dspy_top.model.calls import CallSummary
from dspy_top.viewer.app import TopApp
from dspy_top.viewer.batch import snapshot_json, snapshot_text
from dspy_top.viewer.components.history_table import HistoryTable
from dspy_top.viewer.components.trial_table import TrialTable
from dspy_top.viewer.optimizer_report import optimizer_line
from dspy_top.viewer.screens.main import MainScreen
from dspy_top.viewer.screens.optimizers import OptimizersScreen
from tests.helpers.model_messages import MIPRO, call, counters, fleet_with, runs_of, scope, stats
from tests.helpers.optimizer_script import optimizer_fleet
from tests.helpers.scripted import RUNTIME_DIR, ScriptedCollector
from tests.helpers.steady import keys

# --- pure: scripted scopes ----------------------------------------------------------------------


def test_mipro_phases_from_bootstrapping_to_trials_with_the_baseline_as_trial_0():
    fleet, clock = fleet_with(
        scope("compile-1", "compile", 900.0, **MIPRO),
        scope("compile-2", "compile", 901.0, parent="compile-1", **{"class": "BootstrapFewShot"}),
    )
    run = runs_of(fleet)["compile-1"]
    assert run.label == "MIPROv2 (light)" and run.phase == "bootstrapping demos"
    # auto=light, one predictor with demos: int(max(2*2*log2(6), 9)) = 10 trials, plus the baseline.
    assert run.planned == 11 and run.trial_progress == "-/10"
    fleet.fold(
        "a",
        scope(
            "compile-2",
            "compile",
            901.0,
            parent="compile-1",
            state="done",
            end=910.0,
            usage=counters(calls=4),
            **{"class": "BootstrapFewShot"},
        ),
    )
    fleet.fold(
        "a",
        stats(
            counters(calls=9),
            scopes=[dict(scope("compile-1", "compile", 900.0, **MIPRO), usage=counters(calls=9, in_flight=1))],
        ),
    )
    assert runs_of(fleet)["compile-1"].phase == "proposing instructions"  # LM calls outside any trial

    fleet.fold(
        "a",
        scope(
            "eval-3",
            "eval",
            920.0,
            parent="compile-1",
            total=20,
            done=0,
            score_sum=0.0,
            metadata={"metric_key": "eval_full"},
        ),
    )
    assert runs_of(fleet)["compile-1"].phase == "baseline evaluation"
    fleet.fold(
        "a",
        scope(
            "eval-3",
            "eval",
            920.0,
            parent="compile-1",
            state="done",
            end=930.0,
            score=45.0,
            done=20,
            usage=counters(calls=20, cost=0.002),
        ),
    )
    fleet.fold("a", scope("eval-4", "eval", 931.0, parent="compile-1", total=20, metadata={"metric_key": "eval_full"}))
    fleet.fold("a", {"t": "eval_progress", "id": "eval-4", "done": 5, "score_sum": 4.0})
    clock.now = 936.0
    run = runs_of(fleet)["compile-1"]
    assert [t.number for t in run.trials] == [0, 1]
    assert run.trials[0].kind == "baseline" and run.phase == "trial 1" and run.trial_progress == "1/10"
    assert run.current.running_score == 80.0 and run.best_score == 45.0 and run.best.number == 0
    # Projection: 1.25 trials done for $0.0025 over 16 s; 9.75 to go.
    assert run.cost_to_finish == pytest.approx((0.002 / 1.25) * 9.75)
    assert run.time_to_finish == pytest.approx(16 / 1.25 * 9.75)
    assert "MIPROv2 (light) trial 1/10" in optimizer_line(fleet.snapshot().optimizers, clock.now)


def test_a_new_optimizer_is_one_entry_in_the_rules_table(monkeypatch):
    from dspy_top.model.optimizers import RULES, OptimizerRules

    monkeypatch.setitem(
        RULES,
        "Annealer",
        OptimizerRules(
            first_number=0,
            seed_kinds=("warm-up",),
            plan=lambda scope: (3, "two trials + warm-up"),
            first_phase="warming up",
            between_trials="cooling",
            own_calls_scale=False,
        ),
    )
    annealer = {"class": "Annealer"}
    fleet, clock = fleet_with(
        scope("compile-1", "compile", 0.0, **annealer, usage=counters(calls=30, cost=0.03)),
        scope("eval-2", "eval", 1.0, parent="compile-1", total=10, metadata={"metric_key": "eval_full"}),
    )
    run = runs_of(fleet)["compile-1"]
    assert run.phase == "warming up" and run.trial_progress == "0/2" and run.planned_how == "two trials + warm-up"
    fleet.fold(
        "a",
        scope(
            "eval-2",
            "eval",
            1.0,
            parent="compile-1",
            state="done",
            end=5.0,
            score=40.0,
            total=10,
            done=10,
            usage=counters(calls=10, cost=0.01),
        ),
    )
    fleet.fold(
        "a",
        scope(
            "eval-3",
            "eval",
            6.0,
            parent="compile-1",
            state="done",
            end=9.0,
            score=70.0,
            total=4,
            done=4,
            metadata={"metric_key": "eval_minibatch"},
            usage=counters(calls=4, cost=0.004),
        ),
    )
    clock.now = 11.0
    run = runs_of(fleet)["compile-1"]
    assert [(t.number, t.kind, t.full) for t in run.trials] == [(0, "warm-up", True), (1, "minibatch", False)]
    assert run.phase == "cooling" and run.best_score == 40.0 and run.trial_progress == "1/2"
    # Its own calls do not scale: the projection is the trials' $0.014 for 2 of 3 evaluations.
    assert run.cost_to_finish == pytest.approx(0.014 / 2 * 1)


def test_a_failed_evaluation_is_failed_not_zero_and_minibatch_scores_never_count_as_best():
    evals = [
        scope(
            "eval-2",
            "eval",
            10.0,
            parent="compile-1",
            state="done",
            end=11.0,
            score=40.0,
            total=20,
            done=20,
            metadata={"metric_key": "eval_full"},
            usage=counters(calls=20),
        ),
        scope(
            "eval-3",
            "eval",
            12.0,
            parent="compile-1",
            state="done",
            end=13.0,
            score=100.0,
            total=5,
            done=5,
            metadata={"metric_key": "eval_minibatch"},
            usage=counters(calls=5),
        ),
        scope(
            "eval-4",
            "eval",
            14.0,
            parent="compile-1",
            state="failed",
            end=15.0,
            total=20,
            done=3,
            error="RuntimeError: boom",
            metadata={"metric_key": "eval_full"},
            usage=counters(calls=3),
        ),
        scope(
            "eval-5",
            "eval",
            16.0,
            parent="compile-1",
            state="done",
            end=17.0,
            score=60.0,
            total=20,
            done=20,
            metadata={"metric_key": "eval_full"},
            usage=counters(calls=20),
        ),
    ]
    fleet, _ = fleet_with(
        scope(
            "compile-1",
            "compile",
            1.0,
            **{"class": "MIPROv2"},
            params={"auto": None},
            arguments={"num_trials": 3, "minibatch": True, "minibatch_full_eval_steps": 2},
        ),
        *evals,
    )
    run = runs_of(fleet)["compile-1"]
    failed = run.trials[2]
    assert failed.failed and failed.score is None and failed.scope.error == "RuntimeError: boom"
    assert [t.kind for t in run.trials] == ["baseline", "minibatch", "full", "full"]
    assert run.best_score == 60.0 and run.best.number == 3  # the minibatch 100.0 is not a best
    assert run.planned == 3 + 3 // 2 + 1 + 1  # MIPROv2's own count in minibatch mode
    trial = json.loads(json.dumps(snapshot_json(fleet.snapshot())["optimizers"][0]["trials"][2]))
    assert trial["state"] == "failed" and trial["score"] is None


def test_random_search_counts_n_plus_3_and_names_the_first_three_candidates():
    rs = {"class": "BootstrapFewShotWithRandomSearch", "params": {"num_candidate_sets": 2, "num_threads": 4}}
    messages = [scope("compile-1", "compile", 1.0, **rs, trainset=20, valset=20)]
    for index in range(3):
        messages.append(
            scope(
                f"eval-{index + 2}",
                "eval",
                2.0 + index,
                parent="compile-1",
                state="done",
                end=2.5 + index,
                score=50.0 + index,
                total=20,
                done=20,
                usage=counters(calls=20),
            )
        )
    messages.append(scope("compile-9", "compile", 6.0, parent="compile-1", **{"class": "BootstrapFewShot"}))
    fleet, _ = fleet_with(*messages)
    run = runs_of(fleet)["compile-1"]
    assert run.planned == 5 and run.trial_progress == "3/5"
    assert [t.kind for t in run.trials] == ["zero-shot", "labeled", "unshuffled"]
    assert run.phase == "bootstrapping demos"  # the next candidate's demos
    assert ("num_candidate_programs", 2) in run.params
    assert [r.class_name for r in fleet.snapshot().optimizers] == [
        "BootstrapFewShotWithRandomSearch",
        "BootstrapFewShot",
    ]


def test_gepa_counts_metric_calls_against_its_budget_and_full_evaluations_by_valset_size():
    gepa = {"class": "GEPA", "params": {"max_metric_calls": 40}, "trainset": 8, "valset": 8}
    fleet, clock = fleet_with(
        scope("compile-1", "compile", 0.0, **gepa, usage=counters(calls=14, cost=0.014)),
        scope(
            "eval-2",
            "eval",
            1.0,
            parent="compile-1",
            state="done",
            end=2.0,
            score=25.0,
            total=8,
            done=8,
            usage=counters(calls=8, cost=0.008),
        ),
        scope(
            "eval-3",
            "eval",
            2.0,
            parent="compile-1",
            state="done",
            end=3.0,
            score=100.0,
            total=3,
            done=3,
            usage=counters(calls=3, cost=0.003),
        ),
    )
    clock.now = 12.0
    run = runs_of(fleet)["compile-1"]
    assert [t.full for t in run.trials] == [True, False] and run.best_score == 25.0
    assert run.metric_calls == 11 and run.metric_budget == 40 and run.planned is None
    assert run.phase == "reflecting"
    # Own reflection calls count in the rate (GEPA spends between evaluations): $0.014 for 11 metric calls.
    assert run.cost_to_finish == pytest.approx(0.014 / 11 * 29)
    assert run.time_to_finish == pytest.approx(11 / 11 * 29)


def test_plain_evaluate_is_an_optimizer_with_one_trial_projected_by_its_examples():
    fleet, clock = fleet_with(
        scope("eval-1", "eval", 100.0, total=40, program="RAG", num_threads=8, usage=counters(calls=10, cost=0.01))
    )
    fleet.fold("a", {"t": "eval_progress", "id": "eval-1", "done": 10, "score_sum": 7.0})
    fleet.fold(
        "a",
        stats(
            counters(calls=10),
            scopes=[
                dict(
                    scope("eval-1", "eval", 100.0, total=40, done=10, score_sum=7.0),
                    usage=counters(calls=10, cost=0.01),
                )
            ],
        ),
    )
    clock.now = 105.0
    (run,) = fleet.snapshot().optimizers
    assert run.class_name == "Evaluate" and run.label == "Evaluate (RAG)" and len(run.trials) == 1
    assert run.current.running_score == 70.0
    assert run.cost_to_finish == pytest.approx(0.03) and run.time_to_finish == pytest.approx(15.0)
    (entry,) = snapshot_json(fleet.snapshot())["optimizers"]
    assert entry["class"] == "Evaluate" and entry["state"] == "running" and len(entry["trials"]) == 1


def test_a_call_landing_after_its_evaluation_ended_joins_that_trial():
    late = call(50, start=20.0)
    late["scopes"] = ["compile-1", "eval-2"]
    fleet, _ = fleet_with(
        scope("compile-1", "compile", 1.0, **{"class": "MIPROv2"}),
        scope(
            "eval-2",
            "eval",
            2.0,
            parent="compile-1",
            state="done",
            end=10.0,
            score=50.0,
            total=2,
            done=2,
            usage=counters(calls=2, prompt=200, completion=20, cost=0.002, in_flight=1),
        ),
        late,
    )
    trial = runs_of(fleet)["compile-1"].trials[0]
    assert trial.usage.calls == 3 and trial.usage.prompt_tokens == 300 and trial.usage.in_flight == 0
    assert trial.usage.cost_usd == pytest.approx(0.003)


def test_the_history_filters_to_one_scope():
    inside = CallSummary.from_wire("a", 7, dict(call(1), scopes=["compile-1", "eval-2"]))
    outside = CallSummary.from_wire("a", 7, dict(call(2), scopes=["compile-1"]))
    query = CallQuery("pid:7 scope:eval-2")
    assert query.matches(inside) and not query.matches(outside)
    assert CallQuery("scope:compile-1").matches(outside)


def test_the_scripted_run_renders_in_batch_text_with_trials():
    fleet, _ = optimizer_fleet()
    text = snapshot_text(fleet.snapshot())
    assert "MIPROv2 (light) [pid 41822]" in text and "2:failed" in text and "5:90.0%*" in text
    assert "BootstrapFewShot x3" in text and "Evaluate (Solver)" in text


# --- the screen, scripted: snapshots --------------------------------------------------------


def scripted_app() -> TopApp:
    fleet, _clock = optimizer_fleet()
    return TopApp(fleet, ScriptedCollector(fleet), delay=3600, watching=str(RUNTIME_DIR))


@pytest.mark.slow
@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_optimizer_view_snapshot(snap_compare, utc, size):
    on_optimizers = keys("o", ready=lambda app: isinstance(app.screen, OptimizersScreen) and app.screen.snapshot)
    assert snap_compare(scripted_app(), terminal_size=size, run_before=on_optimizers)


@pytest.mark.slow
def test_selecting_a_trial_filters_the_history_and_headers_sort(utc):
    async def main():
        app = scripted_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("o")
            assert isinstance(app.screen, OptimizersScreen)
            trials = app.screen.query_one(TrialTable)
            assert trials.keys[0] == "eval-16" and len(trials.keys) == 8  # newest first
            await pilot.press("tab")
            assert app.focused is trials
            await pilot.press("down", "enter")  # trial 6: eval-15
            assert app.call_query.text == "pid:41822 scope:eval-15"
            assert app.screen.query_one(HistoryTable).row_count == 4
            assert all("eval-15" in c.scopes for c in app.snapshot.calls)
            await pilot.press("enter")  # again: every call
            assert app.call_query.text == "" and app.screen.query_one(HistoryTable).row_count == 24
            await pilot.press("greater_than_sign")  # sort by the next column: kind
            assert trials.sort_key == "kind"
            trials.set_sort("score")
            assert trials.keys[0] == "eval-14"  # 90.0, the best
            await pilot.press("o")
            assert isinstance(app.screen, MainScreen)

    asyncio.run(main())
