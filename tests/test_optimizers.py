"""Optimizers on the simulated LM: compile and evaluation scopes match what the optimizer reports.

Each job runs one optimizer in a fresh process, then reads its own dspy-top snapshot over
the socket and prints it beside the optimizer's own account (trial logs, candidate scores).
"""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time

import pytest

from dspy_top import client

pytestmark = pytest.mark.slow  # every test here starts a job, a terminal or the real app

PRELUDE = """
import json, os, sys
os.environ['LITELLM_LOCAL_MODEL_COST_MAP'] = 'True'
import dspy, dspy_top
from dspy_top import client

h = dspy_top.instrument()
dspy.configure(lm=dspy.LM('openai/gpt-4o-mini', api_base=os.environ['SIM_URL'], api_key='sim', cache=False))
data = [dspy.Example(question=f'What is {i} + {3 * i}?', answer=str(4 * i)).with_inputs('question') for i in range(40)]
trainset, valset = data[:20], data[20:]
def metric(example, prediction, trace=None):
    return example.answer == str(prediction.answer).strip()
def report(**extra):
    with client.Connection(h.socket_path) as c:
        snapshot = next(m for m in c.poll(5.0) if m['t'] == 'snapshot')
    stats = snapshot['stats']
    print('RESULT ' + json.dumps({'scopes': stats['scopes'], 'totals': stats['totals'], **extra}))
"""


def run_job(sim, body):
    sim.reset()
    env = {**os.environ, "SIM_URL": sim.base_url, "DSPY_TOP_RUNTIME_DIR": tempfile.mkdtemp(prefix="dt", dir="/tmp")}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PRELUDE) + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[7:])
    result["evals"] = [s for s in result["scopes"] if s["kind"] == "eval"]
    result["compiles"] = [s for s in result["scopes"] if s["kind"] == "compile"]
    return result


def test_bootstrap_fewshot_is_a_compile_with_its_nested_labeled_fewshot(sim):
    result = run_job(
        sim,
        """
        optimizer = dspy.BootstrapFewShot(metric=metric, max_bootstrapped_demos=3)
        program = optimizer.compile(dspy.ChainOfThought('question -> answer'), trainset=trainset)
        report(demos=len(program.predict.demos))
    """,
    )
    outer, inner = result["compiles"]
    assert outer["class"] == "BootstrapFewShot" and outer["state"] == "done" and outer["parent"] is None
    assert outer["params"]["max_bootstrapped_demos"] == 3 and outer["trainset"] == 20
    assert inner["class"] == "LabeledFewShot" and inner["parent"] == outer["id"]
    assert result["evals"] == []
    assert outer["usage"]["calls"] == result["totals"]["calls"] == sim.stats()["requests"]
    assert outer["usage"]["prompt_tokens"] == sim.stats()["prompt_tokens"]


def test_random_search_evaluates_n_plus_3_candidates_with_their_scores(sim):
    result = run_job(
        sim,
        """
        optimizer = dspy.BootstrapFewShotWithRandomSearch(metric=metric, num_candidate_programs=2, num_threads=4,
                                                          max_bootstrapped_demos=2)
        program = optimizer.compile(dspy.Predict('question -> answer'), trainset=trainset, valset=valset)
        report(scores=[c['score'] for c in program.candidate_programs])
    """,
    )
    evals = result["evals"]
    assert len(evals) == 2 + 3
    assert sorted(e["score"] for e in evals) == sorted(result["scores"])
    outer = result["compiles"][0]
    assert outer["class"] == "BootstrapFewShotWithRandomSearch"
    for evaluation in evals:
        assert evaluation["parent"] == outer["id"] and evaluation["total"] == 20 == evaluation["done"]
        assert evaluation["usage"]["calls"] == 20
    assert outer["usage"]["calls"] == result["totals"]["calls"] == sim.stats()["requests"]


def test_mipro_v2_light_trials_match_its_trial_logs(sim):
    result = run_job(
        sim,
        """
        optimizer = dspy.MIPROv2(metric=metric, auto='light', num_threads=4, verbose=False)
        program = optimizer.compile(dspy.ChainOfThought('question -> answer'), trainset=trainset, valset=valset)
        logs = [log['full_eval_score'] for _, log in sorted(program.trial_logs.items()) if 'full_eval_score' in log]
        report(trial_scores=logs, best=program.score)
    """,
    )
    evals, (mipro, *nested) = result["evals"], result["compiles"]
    assert mipro["class"] == "MIPROv2" and mipro["params"]["auto"] == "light"
    assert [e["score"] for e in evals] == result["trial_scores"]  # baseline first, then each trial
    assert max(e["score"] for e in evals) == result["best"]
    assert all(e["metadata"] == {"metric_key": "eval_full"} and e["usage"]["calls"] == 20 for e in evals)
    assert {c["class"] for c in nested} == {"BootstrapFewShot", "LabeledFewShot"}
    bootstrapping = sum(c["usage"]["calls"] for c in nested if c["class"] == "BootstrapFewShot")
    in_trials = sum(e["usage"]["calls"] for e in evals)
    proposing = mipro["usage"]["calls"] - bootstrapping - in_trials
    assert proposing > 0  # instruction proposal calls belong to no trial
    assert mipro["usage"]["calls"] == result["totals"]["calls"] == sim.stats()["requests"]


def test_gepa_evaluations_are_scopes(sim):
    result = run_job(
        sim,
        """
        def feedback_metric(gold, pred, trace=None, pred_name=None, pred_trace=None):
            return dspy.Prediction(score=float(gold.answer == str(pred.answer).strip()), feedback='check the sum')
        reflection = dspy.LM('openai/gpt-4o-mini', api_base=os.environ['SIM_URL'], api_key='sim', cache=False)
        optimizer = dspy.GEPA(metric=feedback_metric, max_metric_calls=60, reflection_lm=reflection, num_threads=2)
        program = optimizer.compile(dspy.Predict('question -> answer'), trainset=trainset[:8], valset=valset[:8])
        report()
    """,
    )
    (gepa,) = [c for c in result["compiles"] if c["class"] == "GEPA"]
    assert result["evals"] and all(e["parent"] == gepa["id"] for e in result["evals"])
    assert gepa["usage"]["calls"] == result["totals"]["calls"] == sim.stats()["requests"]


def test_plain_evaluate_is_one_scope_with_progress(sim):
    result = run_job(
        sim,
        """
        result = dspy.Evaluate(devset=valset, metric=metric, num_threads=4)(dspy.Predict('question -> answer'))
        report(score=result.score)
    """,
    )
    (evaluation,) = result["evals"]
    assert evaluation["parent"] is None and evaluation["score"] == result["score"]
    assert evaluation["done"] == evaluation["total"] == 20
    assert evaluation["score_sum"] == pytest.approx(result["score"] / 100 * 20)


def test_attaching_mid_run_shows_the_trials_so_far(sim, tmp_path):
    sim.configure(latency_scale=0.0)
    script = textwrap.dedent(PRELUDE) + textwrap.dedent("""
        import time
        print('READY', h.socket_path, flush=True)
        def slow_metric(example, prediction, trace=None):
            time.sleep(0.02)
            return metric(example, prediction)
        optimizer = dspy.MIPROv2(metric=slow_metric, auto='light', num_threads=2, verbose=False)
        optimizer.compile(dspy.ChainOfThought('question -> answer'), trainset=trainset, valset=valset)
    """)
    env = {**os.environ, "SIM_URL": sim.base_url, "DSPY_TOP_RUNTIME_DIR": str(tmp_path / "rt")}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    try:
        _, socket_path = proc.stdout.readline().split()
        ended = []
        with client.Connection(socket_path) as first:
            deadline = time.monotonic() + 120
            while len(ended) < 3 and time.monotonic() < deadline:
                ended += [m for m in first.poll(0.2) if m["t"] == "eval_end"]
            assert len(ended) >= 3
            with client.Connection(socket_path) as late:
                snapshot = next(m for m in late.poll(5.0) if m["t"] == "snapshot")
        scopes = snapshot["stats"]["scopes"]
        done = {s["id"]: s["score"] for s in scopes if s["kind"] == "eval" and s["state"] == "done"}
        assert all(done[e["id"]] == e["score"] for e in ended)
        running = [s for s in scopes if s["state"] == "running"]
        assert any(s["kind"] == "compile" and s["class"] == "MIPROv2" for s in running)
    finally:
        proc.kill()
        proc.wait()
