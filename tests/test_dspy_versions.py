"""Exact numbers on whichever DSPy is installed (2.6 to 3.4): the subset `.ci/run` runs on each release line.

Real programs on the simulated LM, read back through the socket like a viewer: calls, tokens,
cost, cache hits, retries, module paths, evaluations and optimizer trials must equal what the
simulated LM served and what litellm's price table makes of it. Nothing here depends on the
DSPy version (`lm.history`, for one, differs between releases and is not used).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
from types import SimpleNamespace

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import dspy  # noqa: E402
import pytest  # noqa: E402

from tests.helpers.live import MODEL, PRICE_IN, PRICE_OUT, RAG, nonce  # noqa: E402

pytestmark = [pytest.mark.exactness, pytest.mark.slow]


def lm_for(sim, **kwargs):
    return dspy.LM(
        MODEL, api_base=sim.base_url, api_key="sk-sim-secret-0123456789", cache=kwargs.pop("cache", False), **kwargs
    )


def assert_exact(delta, sim_stats, cache_hits=0, retries=None):
    """What the viewer was told equals what the simulated LM served, priced by litellm's table.

    Retries are the requests the simulated LM failed (injected, or, rarely, a bug of its own
    answering 500), which DSPy retried."""
    retries = sim_stats["failed"] if retries is None else retries
    totals = delta["totals"]
    assert (totals["cache_hits"], totals["retries"]) == (cache_hits, retries)
    assert sim_stats["requests"] == totals["calls"] - cache_hits + retries
    assert (totals["prompt_tokens"], totals["completion_tokens"]) == (
        sim_stats["prompt_tokens"],
        sim_stats["completion_tokens"],
    )
    priced = totals["prompt_tokens"] * PRICE_IN + totals["completion_tokens"] * PRICE_OUT
    assert math.isclose(totals["cost_usd"], priced, rel_tol=1e-9, abs_tol=1e-15)
    assert totals["unpriced_calls"] == 0 and totals["unmetered_calls"] == 0
    calls = delta["calls"]
    assert len(calls) == totals["calls"]
    assert all(call["usage_known"] for call in calls)
    assert sum(c["prompt_tokens"] for c in calls) == totals["prompt_tokens"]
    assert math.isclose(sum(c["cost_usd"] or 0.0 for c in calls), totals["cost_usd"], rel_tol=1e-9, abs_tol=1e-15)


def batch_json(run, tmp_path) -> dict:
    """What `dspy-top -b -n 1 --json` prints of the running test process."""
    done = subprocess.run(
        [sys.executable, "-m", "dspy_top", "-b", "-n", "1", "--json", "--socket", str(run.connection.socket_path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def metric(example, prediction, trace=None):
    return float(str(prediction.answer).strip() == example.answer)


def questions(count, offset=0):
    return [
        dspy.Example(question=f"What is {i + offset} + {i}? {nonce()}", answer=str(2 * i + offset)).with_inputs(
            "question"
        )
        for i in range(count)
    ]


def test_a_program_under_evaluate_with_8_threads(run, sim):
    dspy.configure(lm=lm_for(sim))
    evaluate = dspy.Evaluate(devset=questions(24), metric=metric, num_threads=8, display_progress=False)
    result = evaluate(RAG())
    delta = run.delta()
    assert_exact(delta, sim.stats())
    assert delta["totals"]["calls"] == 48
    assert {path: m["calls"] for path, m in delta["modules"].items()} == {
        "RAG.generate_query.predict": 24,
        "RAG.answer": 24,
    }
    scope = next(s for s in run.scopes.values() if s.get("kind") == "eval" and s.get("state") == "done")
    score = getattr(result, "score", result)  # DSPy 2.6 returns the score itself
    assert (scope["total"], scope["done"], scope["num_threads"], scope["score"]) == (24, 24, 8, score)
    assert scope["usage"]["calls"] == 48 and scope["usage"]["prompt_tokens"] == delta["totals"]["prompt_tokens"]
    assert all(scope["id"] in call["scopes"] for call in delta["calls"])
    # The payload of a call, fetched on demand, carries what was sent and no key.
    payload = run.connection.get_payload(max(call["id"] for call in delta["calls"]))
    assert payload["messages"] and payload["model"] == MODEL
    assert "sk-sim-secret" not in repr(payload)


def test_cache_hits_are_hits_and_not_billed(run, sim):
    dspy.configure(lm=lm_for(sim, cache=True))
    program = dspy.Predict("question -> answer")
    question = f"What is 6 + 6? {nonce()}"
    answers = {program(question=question).answer for _ in range(3)}
    assert len(answers) == 1
    delta = run.delta()
    assert_exact(delta, sim.stats(), cache_hits=2)
    assert sim.stats()["requests"] == 1
    assert math.isclose(delta["totals"]["cost_saved_usd"], 2 * delta["totals"]["cost_usd"], rel_tol=1e-9)
    hits = [call for call in delta["calls"] if call["cache_hit"]]
    assert len(hits) == 2 and all(c["prompt_tokens"] == 0 and c["cost_usd"] == 0.0 for c in hits)


def test_async_calls(run, sim):
    dspy.configure(lm=lm_for(sim))
    program = RAG()

    async def main():
        return await asyncio.gather(*(program.acall(question=f"What is {i} + 5? {nonce()}") for i in range(6)))

    assert len(asyncio.run(main())) == 6
    delta = run.delta()
    assert_exact(delta, sim.stats())
    assert {path: m["calls"] for path, m in delta["modules"].items()} == {
        "RAG.generate_query.predict": 6,
        "RAG.answer": 6,
    }


def test_retries_are_the_providers_extra_requests(run, sim):
    sim.configure(error_every=3)
    dspy.configure(lm=lm_for(sim, num_retries=3))
    program = dspy.Predict("question -> answer")
    for i in range(5):
        program(question=f"What is {i} + 3? {nonce()}")
    stats = sim.stats()
    delta = run.delta()
    assert stats["failed"] >= 1
    assert_exact(delta, stats, retries=stats["failed"])
    assert delta["totals"]["errors"] == 0 and delta["totals"]["calls"] == 5


def test_history_off_changes_nothing(run, sim):
    dspy.configure(lm=lm_for(sim), disable_history=True)
    RAG()(question=f"What is 3 + 3? {nonce()}")
    delta = run.delta()
    assert_exact(delta, sim.stats())
    assert delta["totals"]["calls"] == 2


def test_a_tool_using_program(run, sim):
    dspy.configure(lm=lm_for(sim))
    used = []

    def add(a: int, b: int) -> int:
        """Add two integers."""
        used.append((a, b))
        return a + b

    dspy.ReAct("question -> answer", tools=[add], max_iters=4)(question=f"What is 2 + 3? {nonce()}")
    delta = run.delta()
    assert_exact(delta, sim.stats())
    assert used and [t["name"] for t in delta["tools"]].count("add") == len(used)
    assert {"ReAct.react", "ReAct.extract.predict"} <= set(delta["modules"])


def test_an_optimizer_its_trials_and_what_they_spent(run, sim):
    dspy.configure(lm=lm_for(sim))
    optimizer = dspy.BootstrapFewShotWithRandomSearch(
        metric=metric, max_bootstrapped_demos=1, max_labeled_demos=2, num_candidate_programs=2, num_threads=4
    )
    optimizer.compile(dspy.Predict("question -> answer"), trainset=questions(6), valset=questions(6, offset=1))
    delta = run.delta()
    assert_exact(delta, sim.stats())
    scopes = list(run.scopes.values())
    (search,) = [s for s in scopes if s.get("class") == "BootstrapFewShotWithRandomSearch"]
    assert search["state"] == "done" and search["parent"] is None
    # Everything it spent, bootstrapping included, is in its scope: the whole run here.
    assert search["usage"]["calls"] == delta["totals"]["calls"] == sim.stats()["requests"]
    assert search["usage"]["prompt_tokens"] == delta["totals"]["prompt_tokens"]
    trials = [s for s in scopes if s.get("kind") == "eval" and s.get("parent") == search["id"]]
    assert len(trials) == 2 + 3  # zero-shot, labeled, unshuffled, then the candidates
    assert all(t["state"] == "done" and t["done"] == t["total"] == 6 for t in trials)
    nested = [s for s in scopes if s.get("kind") == "compile" and s.get("parent") == search["id"]]
    assert {s["class"] for s in nested} >= {"BootstrapFewShot"}
    in_trials = sum(t["usage"]["calls"] for t in trials)
    assert in_trials == sum(1 for c in delta["calls"] if any(t["id"] in c["scopes"] for t in trials))


class NoUsageLM(dspy.BaseLM):
    """A custom LM whose responses carry no token counts (as some local servers' do)."""

    def forward(self, prompt=None, messages=None, **kwargs):
        message = SimpleNamespace(
            content="[[ ## answer ## ]]\n4\n\n[[ ## completed ## ]]", tool_calls=None, provider_specific_fields=None
        )
        choice = SimpleNamespace(message=message, finish_reason="stop", index=0, logprobs=None)
        return SimpleNamespace(choices=[choice], model="custom-1", usage={})


def test_calls_without_token_counts_read_as_unknown_not_zero(run, tmp_path):
    dspy.configure(lm=NoUsageLM("custom/model"))
    program = dspy.Predict("question -> answer")
    assert [program(question=f"q {i} {nonce()}").answer for i in range(3)] == ["4"] * 3
    delta = run.delta()
    totals = delta["totals"]
    assert (totals["calls"], totals["unmetered_calls"], totals["unpriced_calls"]) == (3, 3, 3)
    assert [call["usage_known"] for call in delta["calls"]] == [False] * 3
    # The batch JSON a viewer prints says so too.
    snapshot = batch_json(run, tmp_path)
    assert snapshot["totals"]["tokens_known"] is False and snapshot["totals"]["cost_known"] is False
    assert snapshot["totals"]["unmetered_calls"] >= 3
    module = next(m for m in snapshot["modules"] if m["path"] == "Predict")
    assert module["tokens_known"] is False


def test_a_model_without_a_price_has_unknown_cost_not_zero(run, sim, tmp_path):
    """Where DSPy gives no cost (a model litellm's table does not price), tokens stay exact and the cost
    reads as unknown, on the wire and in the batch JSON."""
    dspy.configure(lm=dspy.LM("openai/sim-local", api_base=sim.base_url, api_key="sim", cache=False))
    program = dspy.Predict("question -> answer")
    for i in range(3):
        program(question=f"What is {i} + 7? {nonce()}")
    delta = run.delta()
    stats, totals = sim.stats(), delta["totals"]
    assert (totals["calls"], totals["unpriced_calls"], totals["unmetered_calls"]) == (3, 3, 0)
    assert (totals["prompt_tokens"], totals["completion_tokens"]) == (
        stats["prompt_tokens"],
        stats["completion_tokens"],
    )
    assert [call["cost_usd"] for call in delta["calls"]] == [None] * 3
    snapshot = batch_json(run, tmp_path)
    assert snapshot["totals"]["cost_known"] is False
    # The process's totals also hold the other tests' calls: this model's row is this test's alone.
    model = next(m for m in snapshot["models"] if m["model"] == "openai/sim-local")
    assert (model["calls"], model["cost_known"], model["tokens_known"]) == (3, False, True)
    assert model["prompt_tokens"] == stats["prompt_tokens"]
