"""The optimizer view: trials, phase, best score, spend and projection, derived from scopes.

Pure tests fold scripted scope messages on a fake clock. The real ones run each optimizer on the
simulated LM in one instrumented job (tests/jobs/optimizer_job.py) and check what the viewer
derives against what the optimizer itself reported and the simulated LM's own request count.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dspy_top.model import CallQuery, Fleet
from dspy_top.model.calls import CallSummary
from dspy_top.simlm import SimLM
from dspy_top.viewer.app import TopApp
from dspy_top.viewer.batch import snapshot_json, snapshot_text
from dspy_top.viewer.collector import Collector
from dspy_top.viewer.components.history_table import HistoryTable
from dspy_top.viewer.components.optimizer_summary import OptimizerSummary
from dspy_top.viewer.components.optimizer_table import OptimizerTable
from dspy_top.viewer.components.trial_table import TrialTable
from dspy_top.viewer.optimizer_report import optimizer_line
from dspy_top.viewer.screens.main import MainScreen
from dspy_top.viewer.screens.optimizers import OptimizersScreen
from tests.helpers.jobs import REPO, runtime_dir
from tests.helpers.optimizer_script import optimizer_fleet
from tests.helpers.scripted import RUNTIME_DIR, ScriptedCollector
from tests.test_model import Clock, call, counters, hello, stats

JOB = REPO / "tests" / "jobs" / "optimizer_job.py"


# --- pure: scripted scopes ----------------------------------------------------------------------


def scope(scope_id, kind, start, parent=None, state="running", end=None, usage=None, **extra):
    wire = {"t": f"{kind}_start" if state == "running" else f"{kind}_end", "id": scope_id, "kind": kind,
            "start": start, "end": end, "state": state, "parent": parent, **extra}
    if usage is not None:
        wire["usage"] = usage
    return wire


def fleet_with(*messages, clock=None):
    clock = clock or Clock()
    fleet = Fleet(clock)
    fleet.attach("a", 7)
    fleet.connected("a", hello(7))
    fleet.fold("a", stats(counters()))
    for message in messages:
        fleet.fold("a", message)
    return fleet, clock


def runs_of(fleet):
    return {run.id: run for run in fleet.snapshot().optimizers}


MIPRO = dict(**{"class": "MIPROv2"}, params={"auto": "light", "max_bootstrapped_demos": 4, "max_labeled_demos": 4},
             arguments={}, predictors=1, trainset=20, valset=20)


def test_mipro_phases_from_bootstrapping_to_trials_with_the_baseline_as_trial_0():
    fleet, clock = fleet_with(scope("compile-1", "compile", 900.0, **MIPRO),
                              scope("compile-2", "compile", 901.0, parent="compile-1", **{"class": "BootstrapFewShot"}))
    run = runs_of(fleet)["compile-1"]
    assert run.label == "MIPROv2 (light)" and run.phase == "bootstrapping demos"
    # auto=light, one predictor with demos: int(max(2*2*log2(6), 9)) = 10 trials, plus the baseline.
    assert run.planned == 11 and run.trial_progress == "-/10"
    fleet.fold("a", scope("compile-2", "compile", 901.0, parent="compile-1", state="done", end=910.0,
                          usage=counters(calls=4), **{"class": "BootstrapFewShot"}))
    fleet.fold("a", stats(counters(calls=9), scopes=[dict(scope("compile-1", "compile", 900.0, **MIPRO),
                                                          usage=counters(calls=9, in_flight=1))]))
    assert runs_of(fleet)["compile-1"].phase == "proposing instructions"  # LM calls outside any trial

    fleet.fold("a", scope("eval-3", "eval", 920.0, parent="compile-1", total=20, done=0, score_sum=0.0,
                          metadata={"metric_key": "eval_full"}))
    assert runs_of(fleet)["compile-1"].phase == "baseline evaluation"
    fleet.fold("a", scope("eval-3", "eval", 920.0, parent="compile-1", state="done", end=930.0, score=45.0,
                          done=20, usage=counters(calls=20, cost=0.002)))
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

    monkeypatch.setitem(RULES, "Annealer", OptimizerRules(
        first_number=0, seed_kinds=("warm-up",), plan=lambda scope: (3, "two trials + warm-up"),
        first_phase="warming up", between_trials="cooling", own_calls_scale=False))
    annealer = {"class": "Annealer"}
    fleet, clock = fleet_with(
        scope("compile-1", "compile", 0.0, **annealer, usage=counters(calls=30, cost=0.03)),
        scope("eval-2", "eval", 1.0, parent="compile-1", total=10, metadata={"metric_key": "eval_full"}))
    run = runs_of(fleet)["compile-1"]
    assert run.phase == "warming up" and run.trial_progress == "0/2" and run.planned_how == "two trials + warm-up"
    fleet.fold("a", scope("eval-2", "eval", 1.0, parent="compile-1", state="done", end=5.0, score=40.0, total=10,
                          done=10, usage=counters(calls=10, cost=0.01)))
    fleet.fold("a", scope("eval-3", "eval", 6.0, parent="compile-1", state="done", end=9.0, score=70.0, total=4,
                          done=4, metadata={"metric_key": "eval_minibatch"}, usage=counters(calls=4, cost=0.004)))
    clock.now = 11.0
    run = runs_of(fleet)["compile-1"]
    assert [(t.number, t.kind, t.full) for t in run.trials] == [(0, "warm-up", True), (1, "minibatch", False)]
    assert run.phase == "cooling" and run.best_score == 40.0 and run.trial_progress == "1/2"
    # Its own calls do not scale: the projection is the trials' $0.014 for 2 of 3 evaluations.
    assert run.cost_to_finish == pytest.approx(0.014 / 2 * 1)


def test_a_failed_evaluation_is_failed_not_zero_and_minibatch_scores_never_count_as_best():
    evals = [
        scope("eval-2", "eval", 10.0, parent="compile-1", state="done", end=11.0, score=40.0, total=20, done=20,
              metadata={"metric_key": "eval_full"}, usage=counters(calls=20)),
        scope("eval-3", "eval", 12.0, parent="compile-1", state="done", end=13.0, score=100.0, total=5, done=5,
              metadata={"metric_key": "eval_minibatch"}, usage=counters(calls=5)),
        scope("eval-4", "eval", 14.0, parent="compile-1", state="failed", end=15.0, total=20, done=3,
              error="RuntimeError: boom", metadata={"metric_key": "eval_full"}, usage=counters(calls=3)),
        scope("eval-5", "eval", 16.0, parent="compile-1", state="done", end=17.0, score=60.0, total=20, done=20,
              metadata={"metric_key": "eval_full"}, usage=counters(calls=20)),
    ]
    fleet, _ = fleet_with(scope("compile-1", "compile", 1.0, **{"class": "MIPROv2"}, params={"auto": None},
                                arguments={"num_trials": 3, "minibatch": True, "minibatch_full_eval_steps": 2}),
                          *evals)
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
        messages.append(scope(f"eval-{index + 2}", "eval", 2.0 + index, parent="compile-1", state="done",
                              end=2.5 + index, score=50.0 + index, total=20, done=20, usage=counters(calls=20)))
    messages.append(scope("compile-9", "compile", 6.0, parent="compile-1", **{"class": "BootstrapFewShot"}))
    fleet, _ = fleet_with(*messages)
    run = runs_of(fleet)["compile-1"]
    assert run.planned == 5 and run.trial_progress == "3/5"
    assert [t.kind for t in run.trials] == ["zero-shot", "labeled", "unshuffled"]
    assert run.phase == "bootstrapping demos"  # the next candidate's demos
    assert ("num_candidate_programs", 2) in run.params
    assert [r.class_name for r in fleet.snapshot().optimizers] == ["BootstrapFewShotWithRandomSearch",
                                                                  "BootstrapFewShot"]


def test_gepa_counts_metric_calls_against_its_budget_and_full_evaluations_by_valset_size():
    gepa = {"class": "GEPA", "params": {"max_metric_calls": 40}, "trainset": 8, "valset": 8}
    fleet, clock = fleet_with(
        scope("compile-1", "compile", 0.0, **gepa, usage=counters(calls=14, cost=0.014)),
        scope("eval-2", "eval", 1.0, parent="compile-1", state="done", end=2.0, score=25.0, total=8, done=8,
              usage=counters(calls=8, cost=0.008)),
        scope("eval-3", "eval", 2.0, parent="compile-1", state="done", end=3.0, score=100.0, total=3, done=3,
              usage=counters(calls=3, cost=0.003)))
    clock.now = 12.0
    run = runs_of(fleet)["compile-1"]
    assert [t.full for t in run.trials] == [True, False] and run.best_score == 25.0
    assert run.metric_calls == 11 and run.metric_budget == 40 and run.planned is None
    assert run.phase == "reflecting"
    # Own reflection calls count in the rate (GEPA spends between evaluations): $0.014 for 11 metric calls.
    assert run.cost_to_finish == pytest.approx(0.014 / 11 * 29)
    assert run.time_to_finish == pytest.approx(11 / 11 * 29)


def test_plain_evaluate_is_an_optimizer_with_one_trial_projected_by_its_examples():
    fleet, clock = fleet_with(scope("eval-1", "eval", 100.0, total=40, program="RAG", num_threads=8,
                                    usage=counters(calls=10, cost=0.01)))
    fleet.fold("a", {"t": "eval_progress", "id": "eval-1", "done": 10, "score_sum": 7.0})
    fleet.fold("a", stats(counters(calls=10), scopes=[dict(scope("eval-1", "eval", 100.0, total=40, done=10,
                                                                 score_sum=7.0), usage=counters(calls=10, cost=0.01))]))
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
        scope("eval-2", "eval", 2.0, parent="compile-1", state="done", end=10.0, score=50.0, total=2, done=2,
              usage=counters(calls=2, prompt=200, completion=20, cost=0.002, in_flight=1)),
        late)
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
    assert "MIPROv2 (light) [pid 41822]" in text and "2:failed" in text and "5:90.0*" in text
    assert "BootstrapFewShot x3" in text and "Evaluate (Solver)" in text


# --- the screen, scripted: snapshots --------------------------------------------------------


@pytest.fixture
def utc(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


def scripted_app() -> TopApp:
    fleet, _clock = optimizer_fleet()
    return TopApp(fleet, ScriptedCollector(fleet), delay=3600, runtime_dir=RUNTIME_DIR)


@pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])
def test_optimizer_view_snapshot(snap_compare, utc, size):
    assert snap_compare(scripted_app(), terminal_size=size, press=["o"])


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


# --- real optimizers on the simulated LM ------------------------------------------------------


class OptimizerJob:
    """tests/jobs/optimizer_job.py in a subprocess: one command at a time, with the sim's count around it."""

    def __init__(self, sim: SimLM, directory: Path) -> None:
        self.sim = sim
        self.directory = directory
        env = {**os.environ, "SIM_URL": sim.base_url, "DSPY_TOP_RUNTIME_DIR": str(directory),
               "PYTHONPATH": str(REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        env.pop("DSPY_TOP", None)
        self.proc = subprocess.Popen([sys.executable, str(JOB)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, text=True, env=env, cwd=str(REPO))
        self.socket_path = self._read("READY").split(" ", 1)[1]

    def _read(self, word: str) -> str:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the optimizer job ended before {word}")
            if line.startswith(word):
                return line.strip()

    def start(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def run(self, command: str) -> dict:
        """The optimizer's own account, plus what the simulated LM counted during it."""
        before = self.sim.stats()
        self.start(command)
        truth = json.loads(self._read("TRUTH").split(" ", 1)[1])
        after = self.sim.stats()
        truth["sim"] = {key: after[key] - before[key] for key in ("requests", "prompt_tokens")}
        return truth

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture(scope="module")
def sim():
    with SimLM(latency_scale=0.0) as server:
        yield server


@pytest.fixture(scope="module")
def finished_runs(sim):
    """Each optimizer run to its end in one job; then a viewer attaches and takes one snapshot."""
    job = OptimizerJob(sim, runtime_dir())
    try:
        truths = {command: job.run(command)
                  for command in ("random_search", "mipro_light", "mipro_minibatch", "gepa", "evaluate")}
        yield job, truths
    finally:
        job.close()


def attached_snapshot(directory: Path):
    fleet = Fleet()
    collector = Collector(fleet, directory=directory).start()
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with fleet.lock:
                snapshot = fleet.snapshot(history_limit=10_000)
            if len([r for r in snapshot.optimizers if r.depth == 0]) >= 5:
                return snapshot
            time.sleep(0.05)
        raise AssertionError("the viewer never saw the five runs")
    finally:
        collector.stop()


def root(snapshot, class_name, index=0):
    return [r for r in snapshot.optimizers if r.depth == 0 and r.class_name == class_name][index]


def assert_trials_match_their_calls(run, calls):
    """Each trial's counters (exact, from the job's scope counters) equal its call events summed."""
    for trial in run.trials:
        mine = [c for c in calls if trial.id in c.scopes]
        assert trial.usage.calls == len(mine), trial.id
        assert trial.usage.prompt_tokens == sum(c.prompt_tokens for c in mine)
        assert trial.usage.completion_tokens == sum(c.completion_tokens for c in mine)
        assert trial.usage.cost_usd == pytest.approx(sum(c.cost_usd or 0.0 for c in mine), rel=1e-9, abs=1e-12)


@pytest.mark.timeout(180)
def test_each_optimizer_matches_its_own_account_and_the_simulated_lms_count(finished_runs):
    job, truths = finished_runs
    snapshot = attached_snapshot(job.directory)
    calls = snapshot.calls

    # BootstrapFewShotWithRandomSearch: N + 3 candidates, trial k is seed k - 4.
    rs, truth = root(snapshot, "BootstrapFewShotWithRandomSearch"), truths["random_search"]
    assert rs.state == "done" and rs.planned == len(rs.trials) == 2 + 3
    assert {str(t.number - 4): t.score for t in rs.trials} == truth["by_seed"]
    assert rs.best_score == max(truth["by_seed"].values())
    assert rs.usage.calls == truth["sim"]["requests"] and rs.usage.prompt_tokens == truth["sim"]["prompt_tokens"]
    assert all(t.usage.calls == 20 for t in rs.trials)  # one LM call per valset example, cache off
    assert_trials_match_their_calls(rs, calls)

    # MIPROv2 light: baseline + trials, as its trial logs number them (log k is trial k - 1).
    light, truth = root(snapshot, "MIPROv2", 1), truths["mipro_light"]
    logs = {int(k): v for k, v in truth["trial_logs"].items()}
    assert light.label == "MIPROv2 (light)" and light.planned == len(light.trials) == len(logs)
    assert [t.score for t in light.trials] == [logs[t.number + 1]["full"] for t in light.trials]
    assert light.best_score == truth["best"]
    examples = [logs[k]["examples_so_far"] - logs.get(k - 1, {"examples_so_far": 0})["examples_so_far"]
                for k in sorted(logs)]
    assert [t.usage.calls for t in light.trials] == examples
    assert light.usage.calls == truth["sim"]["requests"] and light.spent_before_trials.calls > 0
    assert_trials_match_their_calls(light, calls)

    # MIPROv2 in minibatch mode: the trial count it computes, minibatch scores apart from the best.
    mini, truth = root(snapshot, "MIPROv2", 0), truths["mipro_minibatch"]
    logs = {int(k): v for k, v in truth["trial_logs"].items()}
    assert mini.planned == len(mini.trials) == len(logs)
    for trial in mini.trials:
        log = logs[trial.number + 1]
        assert trial.score == (log["full"] if trial.full else log["minibatch"])
        assert trial.full == (log["full"] is not None)
    assert mini.best_score == truth["best"]
    assert mini.usage.calls == truth["sim"]["requests"]

    # GEPA: its full valset evaluations, its metric calls, its best aggregate.
    gepa, truth = root(snapshot, "GEPA"), truths["gepa"]
    assert sum(1 for t in gepa.trials if t.full) == truth["full_val_evals"]
    assert gepa.metric_calls == truth["metric_calls"] and gepa.metric_budget == 60
    assert gepa.best_score == pytest.approx(100 * max(truth["val_scores"]))
    assert gepa.usage.calls == truth["sim"]["requests"]
    assert_trials_match_their_calls(gepa, calls)

    # A plain Evaluate with threads: one trial, its score, every call.
    evaluate, truth = root(snapshot, "Evaluate"), truths["evaluate"]
    (trial,) = evaluate.trials
    assert trial.score == truth["score"] and trial.scope.done == truth["examples"]
    assert evaluate.usage.calls == truth["sim"]["requests"] == 20

    # The batch JSON says the same.
    listed = {(o["class"], o["id"]): o for o in snapshot_json(snapshot)["optimizers"]}
    entry = listed[("MIPROv2", light.id)]
    assert entry["state"] == "done" and entry["best_score"] == truths["mipro_light"]["best"]
    assert len(entry["trials"]) == 11
    assert {"score", "calls", "prompt_tokens", "completion_tokens", "cost_usd"} <= set(entry["trials"][0])
    assert listed[("Evaluate", evaluate.id)]["trials"][0]["score"] == truths["evaluate"]["score"]


@pytest.mark.timeout(120)
def test_the_panel_shows_a_real_run_and_a_trial_filters_the_history(finished_runs):
    job, truths = finished_runs

    async def main():
        fleet = Fleet()
        app = TopApp(fleet, Collector(fleet, directory=job.directory, rescan_every=0.2), delay=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("o")
            table = app.screen.query_one(OptimizerTable)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and (
                    app.snapshot is None or len([r for r in app.snapshot.optimizers if r.depth == 0]) < 5):
                await pilot.pause(0.05)
            light = root(app.snapshot, "MIPROv2", 1)
            table.move_cursor(row=table.keys.index(light.key))
            await pilot.pause()
            trials = app.screen.query_one(TrialTable)
            assert len(trials.keys) == 11 and trials.keys[0] == light.trials[-1].id
            summary = str(app.screen.query_one(OptimizerSummary).render())
            assert f"best {truths['mipro_light']['best']:.1f}" in summary and "auto=light" in summary
            trials.focus()
            trials.move_cursor(row=0)
            await pilot.press("enter")
            newest = light.trials[-1]
            await pilot.pause(0.3)
            assert app.call_query.text == f"pid:{light.pid} scope:{newest.id}"
            history = app.screen.query_one(HistoryTable)
            assert history.row_count == newest.usage.calls == 20
            assert all(newest.id in c.scopes for c in app.snapshot.calls)

    asyncio.run(main())


@pytest.mark.timeout(120)
def test_attaching_mid_run_shows_the_trials_so_far(sim):
    from dspy_top import client

    job = OptimizerJob(sim, runtime_dir())
    try:
        job.start("mipro_slow")
        ended: list[dict] = []
        with client.Connection(job.socket_path) as watcher:
            deadline = time.monotonic() + 90
            while len(ended) < 3 and time.monotonic() < deadline:
                ended += [m for m in watcher.poll(0.1) if m["t"] == "eval_end"]
        assert len(ended) >= 3

        async def main():
            fleet = Fleet()
            app = TopApp(fleet, Collector(fleet, directory=job.directory, rescan_every=0.2), delay=0.2)
            async with app.run_test(size=(80, 24)) as pilot:
                await pilot.press("o")
                stop = time.monotonic() + 15
                while time.monotonic() < stop and not (app.snapshot and app.snapshot.optimizers):
                    await pilot.pause(0.05)
                run = app.snapshot.optimizers[0]
                assert run.label == "MIPROv2 (light)" and run.state == "running" and run.planned == 11
                scores = {t.id: t.score for t in run.trials if t.state == "done"}
                assert all(scores[m["id"]] == m["score"] for m in ended)  # what was seen live, from the snapshot
                assert run.trials[0].kind == "baseline" and run.best_score == max(scores.values())
                assert run.phase.startswith(("trial", "baseline")) or run.phase == "between trials"
                assert run.cost_to_finish is not None and run.time_to_finish is not None
                assert app.screen.query_one(TrialTable).keys[0] == run.trials[-1].id

        asyncio.run(main())
    finally:
        job.close()
