"""Cost you can trust, on the viewer's side: re-pricing, unknown prices, cache savings, burn rate, budgets, stop.

Pure model tests on a fake clock first; then the viewer (Pilot) and batch mode against real
jobs on the simulated LM, checked against the job's own counters and the sim's token counts.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import textwrap
import time

import pytest

from dspy_top.model import Fleet
from dspy_top.model.budget import BudgetAlarm, ViewerBudget
from dspy_top.pricing import Price
from dspy_top.protocol import Hello
from dspy_top.simlm import SimLM
from dspy_top.viewer import format as fmt
from dspy_top.viewer.batch import snapshot_json
from tests.helpers.jobs import REPO, runtime_dir

pytestmark = pytest.mark.timeout(120)

LOCAL = "openai/sim-local"  # no price anywhere
MINI = "openai/gpt-4o-mini"  # priced by litellm's table


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def counters(calls=0, prompt=0, completion=0, cost=0.0, hits=0, unpriced=0, saved=0.0, cached=0):
    return {"calls": calls, "errors": 0, "retries": 0, "cache_hits": hits, "prompt_tokens": prompt,
            "completion_tokens": completion, "cached_tokens": cached, "reasoning_tokens": 0, "cost_usd": cost,
            "unpriced_calls": unpriced, "cost_saved_usd": saved, "latency_s": 0.0, "in_flight": 0,
            "latency_hist": {}, "last_at": 0.0}


def stats(totals, modules=(), models=(), scopes=(), budget=None):
    frame = {"t": "stats", "at": 0.0, "totals": totals, "modules": list(modules), "models": list(models),
             "scopes": list(scopes), "dropped_events": 0, "dropped_viewer": 0, "internal_errors": 0,
             "tool_calls": 0, "tool_errors": 0}
    if budget is not None:
        frame["budget"] = budget
    return frame


def attach(fleet, key="/s/1.sock", pid=1, started_at=940.0):
    fleet.attach(key, pid)
    fleet.connected(key, Hello(version=1, pid=pid, argv=["job.py"], cwd="/", started_at=started_at, python="3.11",
                               dspy="3.4.1", dspy_top="0.1.0", mechanism="execution-hooks", history_capacity=100))
    return key


def mixed_frame():
    """Two modules: `a` only on the unpriced local model, `b` on both models (mini priced by the job)."""
    a = counters(3, 300, 30, 0.0, unpriced=3)
    b = counters(4, 1_000, 100, 0.002, unpriced=1)
    totals = counters(7, 1_300, 130, 0.002, unpriced=4, hits=1, saved=0.0005)
    models = [{"model": LOCAL, **counters(4, 400, 40, 0.0, unpriced=4)},
              {"model": MINI, **counters(3, 900, 90, 0.002, hits=1, saved=0.0005)}]
    modules = [{"path": "P.a", "class": "Predict", "chain": ["P", "Predict"], **a, "by_model": {LOCAL: [300, 30, 0]}},
               {"path": "P.b", "class": "Predict", "chain": ["P", "Predict"], **b,
                "by_model": {LOCAL: [100, 10, 0], MINI: [900, 90, 0]}}]
    return stats(totals, modules, models)


# --- pure: the model ----------------------------------------------------------------------


def test_unknown_prices_are_never_zero_anywhere():
    fleet = Fleet(Clock())
    key = attach(fleet)
    fleet.fold(key, mixed_frame())
    fleet.fold(key, {"t": "call", "id": 1, "start": 999.0, "latency": 0.1, "path": "P.a", "model": LOCAL,
                     "prompt_tokens": 100, "completion_tokens": 10, "cost_usd": None, "cache_hit": False})
    snap = fleet.snapshot()
    assert fmt.cost(snap.totals) == "$0.0020+?" and snap.totals.unpriced_calls == 4
    modules = {n.path: n for n in snap.modules[0].children}
    assert fmt.cost(modules["P.a"].counters) == "?" and fmt.cost(modules["P.b"].counters) == "$0.0020+?"
    models = {row.model: row.counters for row in snap.models}
    assert fmt.cost(models[LOCAL]) == "?"
    assert fmt.call_cost(snap.calls[-1].cost_usd) == "?"
    data = snapshot_json(snap)
    assert data["totals"]["cost_known"] is False and data["totals"]["unpriced_calls"] == 4
    assert {m["path"]: m["cost_known"] for m in data["modules"]} == {"P.a": False, "P.b": False}


def test_an_override_reprices_models_modules_totals_and_calls_exactly_from_token_counts():
    local, mini = Price(1.5, 6.0), Price(0.2, 0.8, 0.1)
    fleet = Fleet(Clock(), prices={LOCAL: local, MINI: mini})
    key = attach(fleet)
    fleet.fold(key, mixed_frame())
    fleet.fold(key, {"t": "call", "id": 1, "start": 999.0, "latency": 0.1, "path": "P.a", "model": LOCAL,
                     "prompt_tokens": 100, "completion_tokens": 10, "cost_usd": None, "cache_hit": False})
    snap = fleet.snapshot()
    models = {row.model: row for row in snap.models}
    assert models[LOCAL].price_override and models[LOCAL].counters.unpriced_calls == 0
    assert models[LOCAL].counters.cost_usd == local.cost(400, 40)
    assert models[MINI].counters.cost_usd == mini.cost(900, 90)
    modules = {n.path: n.counters for n in snap.modules[0].children}
    assert modules["P.a"].cost_usd == local.cost(300, 30) and modules["P.a"].cost_known
    assert math.isclose(modules["P.b"].cost_usd, local.cost(100, 10) + mini.cost(900, 90))
    assert math.isclose(snap.totals.cost_usd, local.cost(400, 40) + mini.cost(900, 90)) and snap.totals.cost_known
    assert snap.calls[-1].cost_usd == local.cost(100, 10)
    assert snap.totals.cost_saved_usd == 0.0005  # a cache hit's saving stays as the job priced it


def test_a_partial_override_keeps_the_job_price_for_other_models_and_the_unknown_mark():
    fleet = Fleet(Clock(), prices={MINI: Price(0.2, 0.8)})
    key = attach(fleet)
    fleet.fold(key, mixed_frame())
    snap = fleet.snapshot()
    modules = {n.path: n.counters for n in snap.modules[0].children}
    assert fmt.cost(modules["P.a"]) == "?"  # untouched: its only model has no price
    # P.b: the job's mini cost (all of mini's process cost: P.b is its only module) is replaced.
    assert math.isclose(modules["P.b"].cost_usd, Price(0.2, 0.8).cost(900, 90))
    assert modules["P.b"].unpriced_calls == 1 and snap.totals.unpriced_calls == 4


def test_cache_savings_per_module_and_in_total():
    fleet = Fleet(Clock())
    key = attach(fleet)
    modules = [{"path": "M.first", "class": "Predict", "chain": ["M", "Predict"],
                **counters(2, 100, 10, 0.001, hits=1, saved=0.001)},
               {"path": "M.second", "class": "Predict", "chain": ["M", "Predict"],
                **counters(2, 120, 12, 0.0012, hits=1, saved=0.0012)}]
    fleet.fold(key, stats(counters(4, 220, 22, 0.0022, hits=2, saved=0.0022), modules,
                          [{"model": MINI, **counters(4, 220, 22, 0.0022, hits=2, saved=0.0022)}]))
    data = snapshot_json(fleet.snapshot())
    assert data["totals"]["cost_saved_usd"] == 0.0022
    assert {m["path"]: m["cost_saved_usd"] for m in data["modules"]} == {"M.first": 0.001, "M.second": 0.0012}


def test_burn_rate_over_a_fake_clock_recent_window_and_overall_and_the_eval_projection():
    clock = Clock(1_000.0)
    fleet = Fleet(clock, burn_window=60.0)
    key = attach(fleet, started_at=900.0)  # 100 s before the first frame
    cost, tokens = 0.0, 0
    # 120 s at $0.01/s and 100 tok/s, then 60 s at $0.03/s and 500 tok/s, a frame every 2 s.
    for step in range(1, 91):
        clock.now = 1_000.0 + 2 * step
        fast = step > 60
        cost += 0.06 if fast else 0.02
        tokens += 1000 if fast else 200
        scope = {"id": "eval-1", "kind": "eval", "state": "running", "start": 1_000.0, "total": 50,
                 "done": 20, "score_sum": 10.0, "usage": counters(40, tokens, 0, 0.5)}
        fleet.fold(key, stats(counters(10, tokens, 0, cost), scopes=[scope]))
    burn = fleet.snapshot().burn
    assert burn.window == 60.0
    assert burn.cost_per_min == pytest.approx(0.03 * 60)  # the last minute only
    assert burn.tokens_per_sec == pytest.approx(500)
    assert burn.cost_per_hour == pytest.approx(0.03 * 3600)
    assert burn.cost_per_min_avg == pytest.approx(cost / 280 * 60)  # since the process started
    assert burn.tokens_per_sec_avg == pytest.approx(tokens / 280)
    projection = burn.evaluation
    assert projection.done == 20 and projection.total == 50
    assert projection.projected_usd == pytest.approx(0.5 * 50 / 20)
    assert projection.remaining_usd == pytest.approx(0.75)
    # Quiet for a whole window: the recent rates fall to zero, the averages stay.
    clock.now += 61
    burn = fleet.snapshot().burn
    assert burn.cost_per_min == 0 and burn.tokens_per_sec == 0 and burn.cost_per_min_avg > 0


def test_viewer_budget_levels_fire_once_each_and_job_budgets_are_read():
    fleet = Fleet(Clock(), budget_usd=1.0)
    key = attach(fleet)
    alarm = BudgetAlarm()
    fired = []
    limits = {"on_exceed": "stop", "alerts": [],
              "limits": [{"scope": "total", "name": "", "usd": 2.0}, {"scope": "module", "name": "P.a", "usd": 0.5}]}
    module = {"path": "P.a", "class": "Predict", "chain": ["P", "Predict"]}
    for spent in (0.5, 0.79, 0.8, 0.95, 1.0, 1.5, 0.9):
        fleet.fold(key, stats(counters(1, 1, 1, spent), [{**module, **counters(1, 1, 1, spent / 2)}], budget=limits))
        snap = fleet.snapshot()
        fired += [(spent, level) for level in alarm.crossed(snap.budget)]
    assert fired == [(0.8, 80), (1.0, 100)]
    assert ViewerBudget(1.0, 0.85, True).level == 80 and ViewerBudget(1.0, 0.1, True).level == 0
    fleet.fold(key, {"t": "budget", "at": 1.0, "level": 80, "scope": "total", "name": "", "spent_usd": 1.6,
                     "budget_usd": 2.0, "action": "stop", "message": "dspy-top: total spend passed 80%"})
    fleet.fold(key, stats(counters(1, 1, 1, 1.6), [{**module, **counters(1, 1, 1, 0.8)}], budget={
        **limits, "alerts": [{"level": 80, "scope": "total", "name": "", "message": "dspy-top: total spend passed 80%"}]}))
    (job,) = fleet.snapshot().job_budgets
    assert job.on_exceed == "stop" and job.total.usd == 2.0 and job.total.spent == 1.6
    assert job.worst.label == "module P.a" and job.worst.fraction == pytest.approx(1.6)
    assert [a.level for a in job.alerts] == ["80"]  # the message and the stats entry are one alert


# --- with real jobs on the simulated LM ---------------------------------------------------

JOB = r"""
import json, os, sys
os.environ['LITELLM_LOCAL_MODEL_COST_MAP'] = 'True'
import dspy, dspy_top
handle = dspy_top.instrument()
def lm(model):
    return dspy.LM(model, api_base=os.environ['SIM_URL'], api_key='sim', cache=True)
class Pair(dspy.Module):
    def __init__(self):
        super().__init__()
        self.priced = dspy.Predict('question -> answer')
        self.local = dspy.Predict('question -> answer')
        self.priced.set_lm(lm('openai/gpt-4o-mini'))
        self.local.set_lm(lm('openai/sim-local'))
    def forward(self, question):
        self.priced(question=question)
        return self.local(question=question + ' (check)')
program = Pair()
print('READY', handle.socket_path, flush=True)
done = 0
for line in sys.stdin:
    words = line.split()
    if words and words[0] == 'run':
        for _ in range(int(words[1])):
            program(question=f'What is {done % 4 if done < 8 else done} + 7?')  # calls 5 to 8: cache hits
            done += 1
        print('TRUTH', json.dumps(handle.stats(), default=str), flush=True)
    elif words and words[0] == 'exit':
        break
"""


class Job:
    """A `Pair` program (gpt-4o-mini, priced; sim-local, unpriced) on its own sim, driven over stdin."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.sim = SimLM(latency_scale=0.0).start()
        self.directory = runtime_dir()
        environment = {**os.environ, "SIM_URL": self.sim.base_url, "DSPY_TOP_RUNTIME_DIR": str(self.directory),
                       "DSPY_CACHEDIR": str(self.directory / "cache"), "PYTHONPATH": str(REPO),
                       "DSPY_TOP_CONFIG": str(self.directory / "none.toml"), **(env or {})}
        for name in ("DSPY_TOP", "DSPY_TOP_BUDGET", "DSPY_TOP_PRICES", "DSPY_TOP_ON_EXCEED"):
            if name not in (env or {}):
                environment.pop(name, None)
        self.proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(JOB)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment)
        line = self.proc.stdout.readline()
        assert line.startswith("READY"), self.proc.stderr.read()[-3000:]
        self.pid = self.proc.pid

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def run(self, calls: int) -> dict:
        self.send(f"run {calls}")
        line = self.proc.stdout.readline()
        assert line.startswith("TRUTH"), self.proc.stderr.read()[-3000:]
        return json.loads(line.split(" ", 1)[1])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.sim.stop()


@pytest.fixture(scope="module")
def job():
    # The job's own guard: a tiny budget that warns (never refuses), so its alerts reach the viewer.
    process = Job(env={"DSPY_TOP_BUDGET": "0.00002", "DSPY_TOP_ON_EXCEED": "warn"})
    yield process
    process.close()


def run_app(directory, script, size=(120, 40), **fleet_options):
    from dspy_top.viewer.app import TopApp
    from dspy_top.viewer.collector import Collector

    async def main():
        fleet = Fleet(**fleet_options)
        app = TopApp(fleet, Collector(fleet, directory=directory, rescan_every=0.2), delay=0.2)
        notes: list[tuple[str, str]] = []
        app.notify = lambda message, **kw: notes.append((str(message), kw.get("severity", "information")))
        async with app.run_test(size=size) as pilot:
            await script(app, pilot, notes)

    asyncio.run(main())


async def wait_for(pilot, predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def header(app) -> str:
    from dspy_top.viewer.components.header import Header

    return str(app.query_one(Header).render())


def by_path(truth, kind="modules", key="path"):
    return {entry[key]: entry for entry in truth[kind]}


def test_viewer_shows_unknown_cost_then_an_override_prices_it_exactly_with_savings_per_module(job):
    truth = job.run(6)  # 12 LM calls: 8 billed, 4 cache hits
    local = by_path(truth, "models", "model")[LOCAL]
    assert local["unpriced_calls"] == 4 and truth["totals"]["cache_hits"] == 4

    async def unpriced(app, pilot, notes):
        await wait_for(pilot, lambda: app.snapshot and app.snapshot.totals.calls == truth["totals"]["calls"],
                       what="the job's calls")
        totals = app.snapshot.totals
        assert totals.unpriced_calls == 4 and fmt.cost(totals).endswith("+?")
        assert f"{fmt.cost(totals)} (4 unpriced)" in header(app)
        models = {row.model: row for row in app.snapshot.models}
        assert fmt.cost(models[LOCAL].counters) == "?" and not models[LOCAL].price_override
        from dspy_top.viewer.components.module_table import ModuleTable

        table = app.query_one(ModuleTable)
        column = [c.key for c in table.table_columns]
        row = table.get_row("Pair.local")
        assert str(row[column.index("cost")]) == "?"  # unknown, never $0
        # Cache savings per module: the priced module's hits saved exactly what the job says.
        saved = by_path(truth)["Pair.priced"]["cost_saved_usd"]
        assert saved > 0 and str(table.get_row("Pair.priced")[column.index("saved")]) == fmt.dollars(saved)
        assert f"saved {fmt.dollars(truth['totals']['cost_saved_usd'])}" in header(app)

    run_app(job.directory, unpriced)

    price = Price(1.5, 6.0)
    sim = job.sim.stats()  # every billed call of this job reached this sim, and only those

    async def overridden(app, pilot, notes):
        await wait_for(pilot, lambda: app.snapshot and app.snapshot.totals.calls == truth["totals"]["calls"],
                       what="the job's calls")
        totals = app.snapshot.totals
        assert totals.unpriced_calls == 0 and totals.cost_known
        assert totals.prompt_tokens == sim["prompt_tokens"] and totals.completion_tokens == sim["completion_tokens"]
        assert totals.cost_usd == pytest.approx(price.cost(sim["prompt_tokens"], sim["completion_tokens"]), rel=1e-12)
        models = {row.model: row for row in app.snapshot.models}
        assert models[LOCAL].price_override
        assert models[LOCAL].counters.cost_usd == price.cost(local["prompt_tokens"], local["completion_tokens"])
        modules = {n.path: n.counters for n in app.snapshot.modules[0].children}
        for path, entry in by_path(truth).items():
            assert modules[path].cost_usd == pytest.approx(
                price.cost(entry["prompt_tokens"], entry["completion_tokens"]), rel=1e-12)
        history = [c for c in app.snapshot.calls if not c.cache_hit]
        assert history and all(c.cost_usd == price.cost(c.prompt_tokens, c.completion_tokens) for c in history)
        assert "* your price" in str(app.query_one("#models").border_title)

    run_app(job.directory, overridden, prices={LOCAL: price, MINI: price})


def test_budget_colours_the_header_and_warns_once_at_80_and_100_percent_and_shows_the_jobs_budget(job):
    truth = job.run(1)
    spent = truth["totals"]["cost_usd"]
    budget = spent / 0.85  # 85% now; a few more billed calls cross 100%

    async def script(app, pilot, notes):
        from dspy_top.viewer.components.header import Header

        await wait_for(pilot, lambda: app.snapshot and app.snapshot.totals.calls == truth["totals"]["calls"],
                       what="the job's calls")
        await wait_for(pilot, lambda: app.query_one(Header).has_class("-budget-warn"), what="-budget-warn")
        assert not app.query_one(Header).has_class("-budget-over")
        assert "of $" in header(app) and "(85%)" in header(app)
        viewer_notes = lambda: [n for n in notes if n[0].startswith(("80% of the", "budget $"))]  # noqa: E731
        assert viewer_notes() == [(app.snapshot.budget.message(80), "warning")]

        later = await asyncio.to_thread(job.run, 6)  # new questions: billed
        assert later["totals"]["cost_usd"] >= budget
        await wait_for(pilot, lambda: app.query_one(Header).has_class("-budget-over"), what="-budget-over")
        assert not app.query_one(Header).has_class("-budget-warn")
        await asyncio.to_thread(job.run, 2)
        await pilot.pause(0.6)  # several more refreshes
        assert [n[1] for n in viewer_notes()] == ["warning", "error"]  # once each, in order

        # The job's own guard: its limit, its alerts (each said once), in the header.
        (guard,) = app.snapshot.job_budgets
        assert guard.on_exceed == "warn" and guard.total.usd == 0.00002 and guard.total.fraction > 1
        assert [a.level for a in guard.alerts] == ["80", "100"]
        assert "job budget $0.000020" in header(app)
        job_notes = [n for n in notes if "total budget" in n[0] or "passed 80%" in n[0]]
        assert len(job_notes) == 2

    run_app(job.directory, script, budget_usd=budget)


def test_stop_key_asks_first_then_the_job_ends_and_says_why():
    from dspy_top.viewer.screens.confirm_stop import ConfirmStop
    from dspy_top.viewer.components.process_table import ProcessTable

    stopped = Job()
    try:
        stopped.run(1)

        async def script(app, pilot, notes):
            await wait_for(pilot, lambda: app.snapshot and app.snapshot.attached, what="attach")
            assert app.check_action("stop_job", ()) is False  # nothing focused: hidden from the footer
            await pilot.press("p")  # the process list, cursor on the job
            assert app.focused is app.query_one(ProcessTable)
            assert app.check_action("stop_job", ()) is True
            await pilot.press("k")
            assert isinstance(app.screen, ConfirmStop)
            text = str(app.screen.query_one("#stop-text").render())
            assert f"Stop pid {stopped.pid} (-c)? y/n" in text
            await pilot.press("n")  # no: nothing is sent
            assert not isinstance(app.screen, ConfirmStop)
            await asyncio.to_thread(stopped.run, 1)
            assert stopped.proc.poll() is None
            await pilot.press("k", "y")
            await pilot.pause(0.3)
            assert any("asked pid" in n[0] for n in notes)
            stopped.send("run 3")  # the next LM call ends the run
            code = await asyncio.to_thread(stopped.proc.wait, 30)
            assert code == 1
            await wait_for(pilot, lambda: app.snapshot.processes[0].state == "ended", what="the job's end")
            stops = [a for j in app.snapshot.job_budgets for a in j.alerts if a.level == "stop"]
            assert [(a.scope, a.message.split(" (")[0]) for a in stops] == [
                ("viewer", "dspy-top: stop requested from the viewer")]
            assert app.check_action("stop_job", ()) is False  # nothing left to stop: gone from the footer

        run_app(stopped.directory, script)
        stderr = stopped.proc.stderr.read()
        assert stderr.strip().splitlines()[-1].startswith("dspy-top: stop requested from the viewer (dspy-top pid ")
        assert "Traceback" not in stderr
    finally:
        stopped.close()


def dspy_top_batch(directory, *args):
    env = {**os.environ, "DSPY_TOP_RUNTIME_DIR": str(directory), "PYTHONPATH": str(REPO),
           "DSPY_TOP_CONFIG": str(directory / "none.toml")}
    for name in ("DSPY_TOP_BUDGET", "DSPY_TOP_PRICES"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "dspy_top", "-b", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_batch_json_cost_fields_overrides_budget_warnings_and_exit_status(job):
    truth = job.run(0)
    totals = truth["totals"]
    result = dspy_top_batch(job.directory, "-n", "2", "-d", "0.3", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout.splitlines()[-1])
    assert data["totals"]["unpriced_calls"] == totals["unpriced_calls"] > 0
    assert data["totals"]["cost_known"] is False
    assert data["totals"]["cost_saved_usd"] == pytest.approx(totals["cost_saved_usd"]) and totals["cost_saved_usd"] > 0
    modules = {m["path"]: m for m in data["modules"]}
    for path, entry in by_path(truth).items():
        assert modules[path]["cost_saved_usd"] == pytest.approx(entry["cost_saved_usd"])
        assert modules[path]["unpriced_calls"] == entry["unpriced_calls"]
    rates = data["rates"]
    assert set(rates) >= {"window_s", "cost_per_min", "cost_per_min_avg", "cost_per_hour", "tokens_per_sec",
                          "tokens_per_sec_avg", "eval_projection"}
    assert rates["cost_per_min_avg"] > 0 and rates["tokens_per_sec_avg"] > 0
    assert data["budget"]["viewer"] is None
    (guard,) = data["budget"]["jobs"]
    assert guard["pid"] == job.pid and guard["on_exceed"] == "warn"
    assert [a["level"] for a in guard["alerts"]] == [80, 100]
    assert guard["limits"][0]["spent_usd"] == pytest.approx(totals["cost_usd"])

    # --price: the unpriced model is priced from its exact token counts; the mark says so.
    result = dspy_top_batch(job.directory, "-n", "1", "--json", "--price", f"{LOCAL}=1.5/6")
    data = json.loads(result.stdout)
    local = by_path(truth, "models", "model")[LOCAL]
    assert data["totals"]["unpriced_calls"] == 0 and data["totals"]["cost_known"] is True
    models = {m["model"]: m for m in data["models"]}
    assert models[LOCAL]["price_override"] and not models[MINI]["price_override"]
    assert models[LOCAL]["cost_usd"] == pytest.approx(Price(1.5, 6).cost(local["prompt_tokens"],
                                                                         local["completion_tokens"]))
    assert data["totals"]["cost_usd"] == pytest.approx(totals["cost_usd"] + models[LOCAL]["cost_usd"])

    # --budget: past 80% only: one warning, status 0; past 100%: both, once each over three frames, status 3.
    spent = totals["cost_usd"]
    result = dspy_top_batch(job.directory, "-n", "3", "-d", "0.2", "--budget", str(spent / 0.9))
    assert result.returncode == 0, result.stderr
    assert [line.split(" of the")[0] for line in result.stderr.splitlines()] == ["dspy-top: 80%"]
    result = dspy_top_batch(job.directory, "-n", "3", "-d", "0.2", "--json", "--budget", str(spent / 2))
    assert result.returncode == 3, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith("dspy-top: 80% of the") and lines[1].startswith("dspy-top: budget $")
    assert all("(at least: some calls have no known price)" in line for line in lines)
    viewer = json.loads(result.stdout.splitlines()[-1])["budget"]["viewer"]
    assert viewer["level"] == 100 and viewer["fraction"] == pytest.approx(2.0, rel=1e-6)
    assert dspy_top_batch(job.directory, "-n", "1", "--budget", "abc").returncode == 2
    assert dspy_top_batch(job.directory, "-n", "1", "--price", "x=1").returncode == 2


def test_viewer_prices_come_from_the_options_the_environment_and_the_config_file(tmp_path, monkeypatch):
    from dspy_top import cli

    config = tmp_path / "config.toml"
    config.write_text('[prices]\n"openai/sim-local" = "1/2"\n"m/file" = "3/4/0.5"\n[budget]\nusd = 9.0\n')
    monkeypatch.setenv("DSPY_TOP_CONFIG", str(config))
    monkeypatch.setenv("DSPY_TOP_PRICES", "m/env=5/6")
    monkeypatch.delenv("DSPY_TOP_BUDGET", raising=False)
    parser = cli.build_parser()
    args = parser.parse_args(["--price", "openai/sim-local=7/8", "--budget", "2.5"])
    prices, budget = cli._money(args, parser)
    assert prices == {"openai/sim-local": Price(7, 8), "m/file": Price(3, 4, 0.5), "m/env": Price(5, 6)}
    assert budget == 2.5
    _, budget = cli._money(parser.parse_args([]), parser)
    assert budget is None  # the file's [budget] is each job's own, not the viewer's
    config.write_text("[prices\n")
    with pytest.raises(SystemExit) as exit_info:
        cli._money(parser.parse_args([]), parser)
    assert exit_info.value.code == 2
