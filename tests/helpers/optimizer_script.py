"""The optimizer view's scripted data: a MIPROv2 (light) run mid-trial and an `Evaluate` before it,
on a pinned clock."""

from __future__ import annotations

from dspy_top.model import Fleet
from tests.helpers.scripted import NOW, PinnedClock, _call, _hello, _stats, counters

KEY = "/run/user/1000/dspy-top/41822.sock"
SCORES = [45.0, 70.0, None, 85.0, 60.0, 90.0, 75.0]  # baseline, trials 1-6 (trial 2 failed)


def _eval(
    n,
    parent,
    start,
    end,
    done,
    total,
    score_sum,
    score=None,
    state="done",
    calls=20,
    cost=0.0018,
    metric_key="eval_full",
    error=None,
):
    scope = {
        "id": f"eval-{n}",
        "kind": "eval",
        "state": state,
        "start": start,
        "end": end,
        "total": total,
        "done": done,
        "score_sum": score_sum,
        "score": score,
        "num_threads": 4,
        "metric": "metric",
        "program": "Solver",
        "metadata": {"metric_key": metric_key} if metric_key else {},
        "parent": parent,
        "usage": counters(calls, 900 * calls, 60 * calls, cost, last_at=end or NOW),
    }
    if error:
        scope["error"] = error
    return scope


def optimizer_scopes() -> list[dict]:
    scopes = [_eval(1, None, NOW - 700, NOW - 680, 20, 20, 9.0, 45.0, metric_key=None)]
    mipro = {
        "id": "compile-2",
        "kind": "compile",
        "state": "running",
        "start": NOW - 600,
        "end": None,
        "class": "MIPROv2",
        "parent": None,
        "predictors": 2,
        "trainset": 24,
        "valset": 20,
        "params": {"auto": "light", "num_threads": 4, "max_bootstrapped_demos": 3, "max_labeled_demos": 3},
        "arguments": {},
        "usage": counters(226, 200_000, 14_000, 0.0214),
    }
    scopes.append(mipro)
    n = 3
    for index in range(3):  # bootstrapping: BootstrapFewShot, each with its LabeledFewShot
        start = NOW - 600 + 20 * index
        scopes.append(
            {
                "id": f"compile-{n}",
                "kind": "compile",
                "state": "done",
                "start": start,
                "end": start + 15,
                "class": "BootstrapFewShot",
                "parent": "compile-2",
                "params": {"max_bootstrapped_demos": 3},
                "usage": counters(4, 3_600, 240, 0.0004),
            }
        )
        scopes.append(
            {
                "id": f"compile-{n + 1}",
                "kind": "compile",
                "state": "done",
                "start": start,
                "end": start + 1,
                "class": "LabeledFewShot",
                "parent": f"compile-{n}",
                "params": {"k": 3},
                "usage": counters(0, 0, 0, 0.0),
            }
        )
        n += 2
    start = NOW - 420
    for score in SCORES:
        if score is None:
            scopes.append(
                _eval(
                    n,
                    "compile-2",
                    start,
                    start + 30,
                    4,
                    20,
                    2.0,
                    state="failed",
                    calls=4,
                    cost=0.0004,
                    error="RuntimeError: too many errors",
                )
            )
        else:
            scopes.append(_eval(n, "compile-2", start, start + 50, 20, 20, score / 5, score))
        n += 1
        start += 55
    scopes.append(_eval(n, "compile-2", NOW - 20, None, 12, 20, 9.0, state="running", calls=12, cost=0.0011))
    return scopes


def optimizer_fleet() -> tuple[Fleet, PinnedClock]:
    clock = PinnedClock(NOW - 10)
    fleet = Fleet(clock)
    fleet.attach(KEY, 41822)
    fleet.connected(KEY, _hello(41822, ["optimize.py"], NOW - 720))
    module = counters(246, 218_000, 15_200, 0.0232)
    modules = [
        {"path": "Solver.solve.predict", "class": "Predict", "chain": ["Solver", "ChainOfThought", "Predict"], **module}
    ]
    models = [{"model": "openai/gpt-4o-mini", **module}]
    calls = []
    for i in range(1, 25):  # the last calls: the running trial's, and two of the one before
        scopes = ["compile-2", "eval-16"] if i > 4 else ["compile-2", "eval-15"]
        call = _call(i, "Solver.solve.predict", NOW - 40 + i, 0.8, 900, 60, 0.00009)
        call["scopes"] = scopes
        calls.append(call)
    fleet.fold(
        KEY, {"t": "snapshot", "seq": 24, "calls": calls, "stats": _stats(module, modules, models, optimizer_scopes())}
    )
    clock.now = NOW
    fleet.fold(KEY, _stats(module, modules, models, [s for s in optimizer_scopes() if s["state"] == "running"]))
    return fleet, clock
