"""Cost you can trust, on the viewer's side: re-pricing, unknown prices, cache savings, burn rate, budgets, stop.

Pure model tests on a fake clock, and where the viewer's prices come from. The viewer (Pilot)
and batch mode against real jobs on the simulated LM: tests/test_cost_view_live.py.
"""

from __future__ import annotations

import math

import pytest

from dspy_top.model import Fleet
from dspy_top.model.budget import BudgetAlarm, ViewerBudget
from dspy_top.pricing import Price
from dspy_top.protocol import Hello
from dspy_top.viewer import format as fmt
from dspy_top.viewer.batch import snapshot_json

pytestmark = pytest.mark.timeout(120)

LOCAL = "openai/sim-local"  # no price anywhere
MINI = "openai/gpt-4o-mini"  # priced by litellm's table


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def counters(calls=0, prompt=0, completion=0, cost=0.0, hits=0, unpriced=0, saved=0.0, cached=0):
    return {
        "calls": calls,
        "errors": 0,
        "retries": 0,
        "cache_hits": hits,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": cached,
        "reasoning_tokens": 0,
        "cost_usd": cost,
        "unpriced_calls": unpriced,
        "cost_saved_usd": saved,
        "latency_s": 0.0,
        "in_flight": 0,
        "latency_hist": {},
        "last_at": 0.0,
    }


def stats(totals, modules=(), models=(), scopes=(), budget=None):
    frame = {
        "t": "stats",
        "at": 0.0,
        "totals": totals,
        "modules": list(modules),
        "models": list(models),
        "scopes": list(scopes),
        "dropped_events": 0,
        "dropped_viewer": 0,
        "internal_errors": 0,
        "tool_calls": 0,
        "tool_errors": 0,
    }
    if budget is not None:
        frame["budget"] = budget
    return frame


def attach(fleet, key="/s/1.sock", pid=1, started_at=940.0):
    fleet.attach(key, pid)
    fleet.connected(
        key,
        Hello(
            version=1,
            pid=pid,
            argv=["job.py"],
            cwd="/",
            started_at=started_at,
            python="3.11",
            dspy="3.4.1",
            dspy_top="0.1.0",
            mechanism="execution-hooks",
            history_capacity=100,
        ),
    )
    return key


def mixed_frame():
    """Two modules: `a` only on the unpriced local model, `b` on both models (mini priced by the job)."""
    a = counters(3, 300, 30, 0.0, unpriced=3)
    b = counters(4, 1_000, 100, 0.002, unpriced=1)
    totals = counters(7, 1_300, 130, 0.002, unpriced=4, hits=1, saved=0.0005)
    models = [
        {"model": LOCAL, **counters(4, 400, 40, 0.0, unpriced=4)},
        {"model": MINI, **counters(3, 900, 90, 0.002, hits=1, saved=0.0005)},
    ]
    modules = [
        {"path": "P.a", "class": "Predict", "chain": ["P", "Predict"], **a, "by_model": {LOCAL: [300, 30, 0]}},
        {
            "path": "P.b",
            "class": "Predict",
            "chain": ["P", "Predict"],
            **b,
            "by_model": {LOCAL: [100, 10, 0], MINI: [900, 90, 0]},
        },
    ]
    return stats(totals, modules, models)


# --- pure: the model ----------------------------------------------------------------------


def test_unknown_prices_are_never_zero_anywhere():
    fleet = Fleet(Clock())
    key = attach(fleet)
    # The call event comes first, then the stats frame that counts it (the order a process sends them in).
    fleet.fold(
        key,
        {
            "t": "call",
            "id": 1,
            "start": 999.0,
            "latency": 0.1,
            "path": "P.a",
            "model": LOCAL,
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "cost_usd": None,
            "cache_hit": False,
        },
    )
    fleet.fold(key, mixed_frame())
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
    # P.a's cost is unknown (none of its calls is priced): so is its share of the total, never 0.
    assert {m["path"]: m["cost_share"] for m in data["modules"]} == {"P.a": None, "P.b": 1.0}


def test_an_override_reprices_models_modules_totals_and_calls_exactly_from_token_counts():
    local, mini = Price(1.5, 6.0), Price(0.2, 0.8, 0.1)
    fleet = Fleet(Clock(), prices={LOCAL: local, MINI: mini})
    key = attach(fleet)
    # The call event comes first, then the stats frame that counts it (the order a process sends them in).
    fleet.fold(
        key,
        {
            "t": "call",
            "id": 1,
            "start": 999.0,
            "latency": 0.1,
            "path": "P.a",
            "model": LOCAL,
            "prompt_tokens": 100,
            "completion_tokens": 10,
            "cost_usd": None,
            "cache_hit": False,
        },
    )
    fleet.fold(key, mixed_frame())
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
    modules = [
        {
            "path": "M.first",
            "class": "Predict",
            "chain": ["M", "Predict"],
            **counters(2, 100, 10, 0.001, hits=1, saved=0.001),
        },
        {
            "path": "M.second",
            "class": "Predict",
            "chain": ["M", "Predict"],
            **counters(2, 120, 12, 0.0012, hits=1, saved=0.0012),
        },
    ]
    fleet.fold(
        key,
        stats(
            counters(4, 220, 22, 0.0022, hits=2, saved=0.0022),
            modules,
            [{"model": MINI, **counters(4, 220, 22, 0.0022, hits=2, saved=0.0022)}],
        ),
    )
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
        scope = {
            "id": "eval-1",
            "kind": "eval",
            "state": "running",
            "start": 1_000.0,
            "total": 50,
            "done": 20,
            "score_sum": 10.0,
            "usage": counters(40, tokens, 0, 0.5),
        }
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
    limits = {
        "on_exceed": "stop",
        "alerts": [],
        "limits": [{"scope": "total", "name": "", "usd": 2.0}, {"scope": "module", "name": "P.a", "usd": 0.5}],
    }
    module = {"path": "P.a", "class": "Predict", "chain": ["P", "Predict"]}
    for spent in (0.5, 0.79, 0.8, 0.95, 1.0, 1.5, 0.9):
        fleet.fold(key, stats(counters(1, 1, 1, spent), [{**module, **counters(1, 1, 1, spent / 2)}], budget=limits))
        snap = fleet.snapshot()
        fired += [(spent, level) for level in alarm.crossed(snap.budget)]
    assert fired == [(0.8, 80), (1.0, 100)]
    assert ViewerBudget(1.0, 0.85, True).level == 80 and ViewerBudget(1.0, 0.1, True).level == 0
    fleet.fold(
        key,
        {
            "t": "budget",
            "at": 1.0,
            "level": 80,
            "scope": "total",
            "name": "",
            "spent_usd": 1.6,
            "budget_usd": 2.0,
            "action": "stop",
            "message": "dspy-top: total spend passed 80%",
        },
    )
    fleet.fold(
        key,
        stats(
            counters(1, 1, 1, 1.6),
            [{**module, **counters(1, 1, 1, 0.8)}],
            budget={
                **limits,
                "alerts": [{"level": 80, "scope": "total", "name": "", "message": "dspy-top: total spend passed 80%"}],
            },
        ),
    )
    (job,) = fleet.snapshot().job_budgets
    assert job.on_exceed == "stop" and job.total.usd == 2.0 and job.total.spent == 1.6
    assert job.worst.label == "module P.a" and job.worst.fraction == pytest.approx(1.6)
    assert [a.level for a in job.alerts] == ["80"]  # the message and the stats entry are one alert


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
