"""Real optimizers on the simulated LM, seen by the optimizer view.

Each optimizer runs in one instrumented job (tests/jobs/optimizer_job.py); what the viewer
derives is checked against what the optimizer itself reported and the simulated LM's own
request count, and the optimizer screen shows a real run.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dspy_top.model import Fleet
from dspy_top.sources.collector import Collector
from dspy_top.sources.local import local_sockets
from dspy_top.viewer.app import TopApp
from dspy_top.viewer.batch import snapshot_json
from dspy_top.viewer.components.history_table import HistoryTable
from dspy_top.viewer.components.optimizer_summary import OptimizerSummary
from dspy_top.viewer.components.optimizer_table import OptimizerTable
from dspy_top.viewer.components.trial_table import TrialTable
from tests.helpers.jobs import runtime_dir
from tests.helpers.optimizer_job import OptimizerJob

pytestmark = pytest.mark.slow  # every test here starts a job, a terminal or the real app


@pytest.fixture(scope="module")
def finished_runs(sim):
    """Each optimizer run to its end in one job; then a viewer attaches and takes one snapshot."""
    job = OptimizerJob(sim, runtime_dir())
    try:
        truths = {
            command: job.run(command)
            for command in ("random_search", "mipro_light", "mipro_minibatch", "gepa", "evaluate")
        }
        yield job, truths
    finally:
        job.close()


def attached_snapshot(directory: Path):
    fleet = Fleet()
    collector = Collector(fleet, [local_sockets(directory=directory)]).start()
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
    examples = [
        logs[k]["examples_so_far"] - logs.get(k - 1, {"examples_so_far": 0})["examples_so_far"] for k in sorted(logs)
    ]
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
        app = TopApp(fleet, Collector(fleet, [local_sockets(directory=job.directory, rescan_every=0.2)]), delay=0.2)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("o")
            table = app.screen.query_one(OptimizerTable)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and (
                app.snapshot is None or len([r for r in app.snapshot.optimizers if r.depth == 0]) < 5
            ):
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
            app = TopApp(fleet, Collector(fleet, [local_sockets(directory=job.directory, rescan_every=0.2)]), delay=0.2)
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
