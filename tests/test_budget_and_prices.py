"""Cost you can trust: unknown prices, overrides, cache savings and budgets that really stop a run.

Each test runs a real DSPy job on the simulated LM in a fresh process (budgets act on the
whole process) and reads the outcome from its output and its dspy-top counters.
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import textwrap

import pytest

from dspy_top import client

pytestmark = pytest.mark.slow  # every test here starts a job, a terminal or the real app

PRELUDE = """
import json, os, sys
os.environ['LITELLM_LOCAL_MODEL_COST_MAP'] = 'True'
import dspy, dspy_top

def emit(**kw):
    print('RESULT ' + json.dumps(kw), flush=True)
def lm(model='openai/gpt-4o-mini', **kw):
    return dspy.LM(model, api_base=os.environ['SIM_URL'], api_key='sim', cache=kw.pop('cache', False), **kw)
"""


def run_job(sim, body, env=None, expect_code=0, timeout=300):
    script = textwrap.dedent(PRELUDE) + textwrap.dedent(body)
    sim.reset()
    runtime = tempfile.mkdtemp(prefix="dt", dir="/tmp")
    full_env = {
        **os.environ,
        "SIM_URL": sim.base_url,
        "DSPY_TOP_RUNTIME_DIR": runtime,
        "DSPY_TOP_CONFIG": os.path.join(runtime, "none.toml"),
        **(env or {}),
    }
    for name in ("DSPY_TOP", "DSPY_TOP_BUDGET", "DSPY_TOP_PRICES", "DSPY_TOP_ON_EXCEED"):
        if name not in (env or {}):
            full_env.pop(name, None)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=full_env, timeout=timeout)
    assert done.returncode == expect_code, done.stderr[-4000:]
    results = [json.loads(line[7:]) for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return (results[-1] if results else None), done.stderr


def test_unknown_prices_are_unknown_never_zero(sim):
    result, _ = run_job(
        sim,
        """
        h = dspy_top.instrument()
        dspy.configure(lm=lm('openai/sim-local'))
        for i in range(3):
            dspy.Predict('question -> answer')(question=f'What is {i} + 1?')
        emit(totals=h.stats()['totals'])
    """,
    )
    totals = result["totals"]
    assert totals["calls"] == 3 and totals["unpriced_calls"] == 3
    assert totals["prompt_tokens"] == sim.stats()["prompt_tokens"] > 0


def test_price_overrides_replace_the_table_exactly(sim):
    result, _ = run_job(
        sim,
        """
        h = dspy_top.instrument(prices={'openai/sim-local': '1.5/6'})
        dspy.configure(lm=lm('openai/sim-local'))
        for i in range(3):
            dspy.Predict('question -> answer')(question=f'What is {i} + 1?')
        emit(totals=h.stats()['totals'])
    """,
    )
    totals, stats = result["totals"], sim.stats()
    assert totals["unpriced_calls"] == 0
    expected = (stats["prompt_tokens"] * 1.5 + stats["completion_tokens"] * 6) / 1e6
    assert math.isclose(totals["cost_usd"], expected, rel_tol=1e-12)


def test_prices_and_budget_from_the_config_file_and_environment(sim, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text('[prices]\n"openai/sim-local" = "2/4"\n[budget]\nusd = 1000.0\n')
    result, _ = run_job(
        sim,
        """
        h = dspy_top.instrument()
        dspy.configure(lm=lm('openai/sim-local'))
        dspy.Predict('question -> answer')(question='What is 1 + 1?')
        emit(totals=h.stats()['totals'], budget=h.stats()['budget'])
    """,
        env={"DSPY_TOP_CONFIG": str(config), "DSPY_TOP_BUDGET": "2.5"},
    )
    stats = sim.stats()
    assert math.isclose(
        result["totals"]["cost_usd"], (stats["prompt_tokens"] * 2 + stats["completion_tokens"] * 4) / 1e6
    )
    assert result["budget"]["limits"] == [{"scope": "total", "name": "", "usd": 2.5}]  # env beats the file


def test_cache_savings_are_kept_apart_per_module(sim):
    result, _ = run_job(
        sim,
        """
        import uuid
        h = dspy_top.instrument()
        dspy.configure(lm=lm(cache=True))
        class Two(dspy.Module):
            def __init__(self):
                super().__init__()
                self.first = dspy.Predict('question -> answer')
                self.second = dspy.Predict('question -> answer')
            def forward(self, question):
                self.first(question=question)
                return self.second(question=question + ' again')
        q = 'What is 3 + 4? ' + uuid.uuid4().hex
        program = Two()
        program(question=q)
        program(question=q)
        emit(stats=h.stats())
    """,
    )
    modules = {m["path"]: m for m in result["stats"]["modules"]}
    for path in ("Two.first", "Two.second"):
        assert modules[path]["cache_hits"] == 1 and modules[path]["calls"] == 2
        assert math.isclose(modules[path]["cost_saved_usd"], modules[path]["cost_usd"], rel_tol=1e-12)
    totals = result["stats"]["totals"]
    assert math.isclose(totals["cost_saved_usd"], totals["cost_usd"], rel_tol=1e-12)
    assert sim.stats()["requests"] == 2


LOOP = """
    h = dspy_top.instrument(budget_usd=BUDGET, on_exceed=ACTION)
    dspy.configure(lm=lm())
    program = dspy.Predict('question -> answer')
    costs, made = [], 0
    try:
        for i in range(200):
            before = h.stats()['totals']['cost_usd']
            program(question=f'What is {i} + 10? Explain briefly.')
            made += 1
            costs.append(h.stats()['totals']['cost_usd'])
        emit(made=made, costs=costs, raised=None, stats=h.stats())
    except dspy_top.BudgetExceeded as exc:
        emit(made=made, costs=costs, raised=type(exc).__name__, message=str(exc), stats=h.stats())
"""


def budget_for(sim, calls):
    """A budget that the given number of calls crosses: measured on the same deterministic questions."""
    result, _ = run_job(
        sim, LOOP.replace("BUDGET", "None").replace("ACTION", "'warn'").replace("range(200)", f"range({calls + 3})")
    )
    costs = result["costs"]
    return (costs[calls - 2] + costs[calls - 1]) / 2, costs


def test_warn_fires_once_at_80_and_once_at_100_percent_and_carries_on(sim):
    budget, costs = budget_for(sim, 6)
    result, stderr = run_job(
        sim, LOOP.replace("BUDGET", repr(budget)).replace("ACTION", "'warn'").replace("range(200)", "range(10)")
    )
    assert result["made"] == 10 and result["raised"] is None
    assert stderr.count("passed 80%") == 1 and stderr.count("budget $") == 1
    alerts = result["stats"]["budget"]["alerts"]
    assert [a["level"] for a in alerts] == [80, 100]
    first_over = next(i for i, c in enumerate(result["costs"]) if c >= budget)
    assert first_over == 5  # the 6th call crossed it
    assert math.isclose(alerts[1]["spent_usd"], result["costs"][5])


def test_raise_refuses_the_next_call_after_the_budget_is_crossed(sim):
    budget, _ = budget_for(sim, 4)
    result, stderr = run_job(sim, LOOP.replace("BUDGET", repr(budget)).replace("ACTION", "'raise'"))
    assert result["raised"] == "BudgetExceeded"
    assert result["made"] == 4  # the 4th call crossed the budget and was counted; the 5th never started
    assert result["stats"]["totals"]["calls"] == 4 == sim.stats()["requests"]
    assert "budget" in result["message"] and "BudgetExceeded" in stderr


def test_a_budget_stops_evaluate_with_threads_instead_of_scoring_zero(sim):
    budget, _ = budget_for(sim, 6)
    result, stderr = run_job(
        sim,
        f"""
        h = dspy_top.instrument(budget_usd={budget!r}, on_exceed='raise')
        dspy.configure(lm=lm())
        devset = [dspy.Example(question=f'What is {{i}} + 10? Explain briefly.', answer='x').with_inputs('question')
                  for i in range(60)]
        evaluate = dspy.Evaluate(devset=devset, metric=lambda e, p, t=None: 1.0, num_threads=4)
        try:
            evaluate(dspy.Predict('question -> answer'))
            emit(raised=None, stats=h.stats())
        except dspy_top.BudgetExceeded as exc:
            import time
            raised_at = h.stats()['totals']
            while h.stats()['totals']['in_flight']:  # other workers' calls still finishing
                time.sleep(0.01)
            emit(raised=type(exc).__name__, stats=h.stats(), raised_at=raised_at)
    """,
    )
    assert result["raised"] == "BudgetExceeded"
    totals = result["stats"]["totals"]
    # Calls in flight on other threads when the budget was crossed finish and are counted.
    assert 6 <= totals["calls"] < 6 + 4 and totals["calls"] == sim.stats()["requests"]
    assert totals["errors"] == 0
    # Those in flight were started before the budget was crossed: once done, nothing else starts.
    assert result["raised_at"]["calls"] + result["raised_at"]["in_flight"] == totals["calls"]


def test_stop_ends_an_optimizer_run_cleanly_and_says_why(sim):
    budget, _ = budget_for(sim, 8)
    result, stderr = run_job(
        sim,
        f"""
        h = dspy_top.instrument(budget_usd={budget!r}, on_exceed='stop')
        dspy.configure(lm=lm())
        trainset = [dspy.Example(question=f'What is {{i}} + {{i}}?', answer=str(2 * i)).with_inputs('question')
                    for i in range(40)]
        optimizer = dspy.BootstrapFewShotWithRandomSearch(metric=lambda e, p, t=None: e.answer == p.answer,
                                                          num_candidate_programs=4, num_threads=2)
        optimizer.compile(dspy.ChainOfThought('question -> answer'), trainset=trainset[:20], valset=trainset[20:])
        emit(finished=True)
    """,
        expect_code=1,
    )
    assert result is None  # it never finished
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1].startswith("dspy-top: total budget $")
    assert "the run stops at its next LM call" in stderr
    assert stderr.strip().splitlines()[-1].endswith("; stopped the run")
    assert sim.stats()["requests"] < 8 + 4


def test_a_viewer_can_stop_the_job(sim, tmp_path):
    script = textwrap.dedent(PRELUDE) + textwrap.dedent("""
        import time
        h = dspy_top.instrument()
        dspy.configure(lm=lm())
        print('READY', h.socket_path, flush=True)
        program = dspy.Predict('question -> answer')
        for i in range(100000):
            program(question=f'What is {i} + 1?')
            time.sleep(0.01)
    """)
    env = {**os.environ, "SIM_URL": sim.base_url, "DSPY_TOP_RUNTIME_DIR": str(tmp_path / "rt")}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    try:
        _, socket_path = proc.stdout.readline().split()
        with client.Connection(socket_path) as connection:
            connection.request_stop("stop requested from the viewer")
            _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1
    assert stderr.strip().splitlines()[-1] == "dspy-top: stop requested from the viewer"
    assert "Traceback" not in stderr


def test_small_amounts_keep_their_digits_in_messages():
    from dspy_top.pricing import usd

    assert [usd(v) for v in (5, 1234.5, 0.25, 0.01, 0.002, 0.0021, 0.000012, 0)] == [
        "$5.00",
        "$1,234.50",
        "$0.25",
        "$0.01",
        "$0.0020",
        "$0.0021",
        "$0.000012",
        "$0.00",
    ]
