"""Real DSPy programs on both LM engines against the simulated LM, read back through the socket.

Every test runs a program, then checks that what dspy-top serves (through
`dspy_top.client`, over the real Unix socket) equals the simulated LM's own count of
requests and tokens, the priced truth, and what DSPy itself recorded.
"""

import asyncio
import math
import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import dspy  # noqa: E402
import pytest  # noqa: E402

from tests.helpers.live import MODEL, PRICE_IN, PRICE_OUT, RAG, nonce  # noqa: E402

pytestmark = pytest.mark.slow  # every test here starts a job, a terminal or the real app

ENGINES = ["auto", "litellm"]


def make_lm(sim, engine, **kwargs):
    return dspy.LM(
        MODEL,
        api_base=sim.base_url,
        api_key="sk-sim-secret-0123456789",
        engine=engine,
        cache=kwargs.pop("cache", False),
        **kwargs,
    )


def assert_matches_truth(delta, sim_stats, history=None, cache_hits=0, retries=0):
    totals = delta["totals"]
    assert totals["cache_hits"] == cache_hits
    assert totals["retries"] == retries
    # Every billed call reached the server; retries reached it again.
    assert sim_stats["requests"] == totals["calls"] - cache_hits + retries
    assert totals["prompt_tokens"] == sim_stats["prompt_tokens"]
    assert totals["completion_tokens"] == sim_stats["completion_tokens"]
    priced = totals["prompt_tokens"] * PRICE_IN + totals["completion_tokens"] * PRICE_OUT
    assert math.isclose(totals["cost_usd"], priced, rel_tol=1e-9, abs_tol=1e-15)
    assert totals["unpriced_calls"] == 0
    if history is not None:
        assert totals["calls"] == len(history)
        billed = [e for e in history if e["usage"]]
        assert math.isclose(totals["cost_usd"], sum(e["cost"] for e in billed), rel_tol=1e-9, abs_tol=1e-15)
    calls = delta["calls"]
    assert len(calls) == totals["calls"]
    assert sum(c["prompt_tokens"] for c in calls) == totals["prompt_tokens"]


@pytest.mark.parametrize("engine", ENGINES)
def test_predict_and_chain_of_thought(run, sim, engine):
    lm = make_lm(sim, engine)
    dspy.configure(lm=lm)
    predict, cot = dspy.Predict("question -> answer"), dspy.ChainOfThought("question -> answer")
    for i in range(3):
        predict(question=f"What is {i} + 1? {nonce()}")
        cot(question=f"What is {i} + 2? {nonce()}")
    delta = run.delta()
    assert_matches_truth(delta, sim.stats(), history=lm.history)
    assert delta["totals"]["calls"] == 6
    assert set(delta["modules"]) == {"Predict", "ChainOfThought.predict"}
    assert set(delta["models"]) == {MODEL}
    call = delta["calls"][-1]
    assert call["module_class"] == "Predict" and call["latency"] > 0 and not call["cache_hit"]


@pytest.mark.parametrize("engine", ENGINES)
def test_two_module_program_paths_and_payload(run, sim, engine):
    lm = make_lm(sim, engine)
    dspy.configure(lm=lm)
    program = RAG()
    program(question=f"What is 12 + 30? {nonce()}")
    delta = run.delta()
    assert_matches_truth(delta, sim.stats(), history=lm.history)
    assert set(delta["modules"]) == {"RAG.generate_query.predict", "RAG.answer"}
    chains = {m["path"]: m["chain"] for m in delta["stats"]["modules"]}
    assert chains["RAG.generate_query.predict"] == ["RAG", "ChainOfThought", "Predict"]
    # The full payload, fetched on demand, reads like inspect_history and carries no key.
    last = max(delta["calls"], key=lambda c: c["id"])
    payload = run.connection.get_payload(last["id"])
    assert [m["role"] for m in payload["messages"]][0] == "system"
    assert "[[ ## answer ## ]]" in repr(payload["outputs"])
    assert "sk-sim-secret" not in repr(payload)
    assert payload["options"]["api_key"] == "[redacted]"


@pytest.mark.parametrize("engine", ENGINES)
def test_paths_hold_on_optimizer_copies(run, sim, engine):
    lm = make_lm(sim, engine)
    dspy.configure(lm=lm)
    copy = RAG().deepcopy()
    copy(question=f"What is 1 + 1? {nonce()}")
    assert set(run.delta()["modules"]) == {"RAG.generate_query.predict", "RAG.answer"}


@pytest.mark.parametrize("engine", ENGINES)
def test_react_with_a_tool(run, sim, engine):
    lm = make_lm(sim, engine)
    dspy.configure(lm=lm)
    used = []

    def add(a: int, b: int) -> int:
        """Add two integers."""
        used.append((a, b))
        return a + b

    react = dspy.ReAct("question -> answer", tools=[add], max_iters=4)
    react(question=f"What is 2 + 3? {nonce()}")
    delta = run.delta()
    assert_matches_truth(delta, sim.stats(), history=lm.history)
    assert used, "the simulated LM should have the program call its tool"
    assert "ReAct.react" in delta["modules"] and "ReAct.extract.predict" in delta["modules"]
    names = [t["name"] for t in delta["tools"]]
    assert names.count("add") == len(used) and names[-1] == "finish"
    assert all(t["path"] == "ReAct" and t["error"] is None for t in delta["tools"])


@pytest.mark.parametrize("engine", ENGINES)
def test_parallel_with_8_threads_and_track_usage(run, sim, engine):
    lm = make_lm(sim, engine)
    dspy.configure(lm=lm, track_usage=True)
    program = RAG()
    parallel = dspy.Parallel(num_threads=8)
    pairs = [(program, {"question": f"What is {i} + 7? {nonce()}"}) for i in range(24)]
    results = parallel(pairs)
    delta = run.delta()
    assert_matches_truth(delta, sim.stats(), history=lm.history)
    assert delta["totals"]["calls"] == 48
    assert delta["modules"]["RAG.answer"]["calls"] == 24
    # Where DSPy's own per-prediction usage survives, it agrees with ours call for call.
    per_prediction = [r.get_lm_usage() or {} for r in results]
    tracked = sum(u.get(MODEL, {}).get("prompt_tokens", 0) for u in per_prediction)
    assert tracked <= delta["totals"]["prompt_tokens"]


@pytest.mark.parametrize("engine", ENGINES)
def test_evaluate_with_16_threads_is_a_scope_with_exact_usage(run, sim, engine):
    lm = make_lm(sim, engine)
    dspy.configure(lm=lm)
    devset = [
        dspy.Example(question=f"What is {i} + {i}? {nonce()}", answer=str(2 * i)).with_inputs("question")
        for i in range(32)
    ]

    def metric(example, prediction, trace=None):
        return float(str(prediction.answer).strip() == example.answer)

    evaluate = dspy.Evaluate(devset=devset, metric=metric, num_threads=16)
    result = evaluate(dspy.Predict("question -> answer"), callback_metadata={"metric_key": "eval_full"})
    delta = run.delta()
    assert_matches_truth(delta, sim.stats(), history=lm.history)
    evals = [s for s in run.scopes.values() if s.get("kind") == "eval" and s.get("state") == "done"]
    scope = evals[-1]
    assert scope["total"] == 32 and scope["done"] == 32 and scope["num_threads"] == 16
    assert scope["score"] == result.score
    assert scope["metadata"] == {"metric_key": "eval_full"}
    assert scope["usage"]["calls"] == 32
    assert scope["usage"]["prompt_tokens"] == delta["totals"]["prompt_tokens"]
    assert all(scope["id"] in c["scopes"] for c in delta["calls"])


@pytest.mark.parametrize("engine", ENGINES)
def test_async_acall(run, sim, engine):
    lm = make_lm(sim, engine)
    dspy.configure(lm=lm)
    program = dspy.ChainOfThought("question -> answer")

    async def main():
        return await asyncio.gather(*(program.acall(question=f"What is {i} + 5? {nonce()}") for i in range(6)))

    assert len(asyncio.run(main())) == 6
    delta = run.delta()
    assert_matches_truth(delta, sim.stats(), history=lm.history)
    ((path, module),) = delta["modules"].items()
    assert path == "ChainOfThought.predict"
    assert (module["calls"], module["prompt_tokens"]) == (6, delta["totals"]["prompt_tokens"])


@pytest.mark.parametrize("engine", ENGINES)
def test_asyncify_runs_in_a_worker_thread(run, sim, engine):
    lm = make_lm(sim, engine)
    dspy.configure(lm=lm)
    program = dspy.asyncify(RAG())

    async def main():
        return await asyncio.gather(*(program(question=f"What is {i} + 9? {nonce()}") for i in range(3)))

    asyncio.run(main())
    delta = run.delta()
    assert_matches_truth(delta, sim.stats(), history=lm.history)
    assert set(delta["modules"]) == {"RAG.generate_query.predict", "RAG.answer"}


@pytest.mark.parametrize("track_usage", [False, True])
@pytest.mark.parametrize("engine", ENGINES)
def test_streaming(run, sim, engine, track_usage):
    lm = make_lm(sim, engine)
    dspy.configure(lm=lm, track_usage=track_usage)
    program = dspy.streamify(dspy.Predict("question -> answer"))

    async def main():
        chunks = 0
        async for _chunk in program(question=f"What is 4 + 4? {nonce()}"):
            chunks += 1
        return chunks

    assert asyncio.run(main()) >= 1
    delta = run.delta()
    assert_matches_truth(delta, sim.stats(), history=lm.history)
    assert sim.stats().get("streaming_requests", 1) >= 1
    assert all(c["stream"] for c in delta["calls"])


@pytest.mark.parametrize("engine", ENGINES)
def test_cache_hits_are_hits_not_billed_tokens(run, sim, engine):
    lm = make_lm(sim, engine, cache=True)
    dspy.configure(lm=lm)
    program = dspy.Predict("question -> answer")
    question = f"What is 6 + 6? {nonce()}"
    first = program(question=question)
    second = program(question=question)
    third = program(question=question)
    assert first.answer == second.answer == third.answer
    delta = run.delta()
    assert_matches_truth(delta, sim.stats(), history=lm.history, cache_hits=2)
    assert delta["totals"]["calls"] == 3 and sim.stats()["requests"] == 1
    one_call = delta["totals"]["cost_usd"]
    assert math.isclose(delta["totals"]["cost_saved_usd"], 2 * one_call, rel_tol=1e-9)
    # DSPy's own history keeps the original cost on hits: summing it overcounts.
    assert math.isclose(sum(e["cost"] for e in lm.history), 3 * one_call, rel_tol=1e-9)
    hits = [c for c in delta["calls"] if c["cache_hit"]]
    assert len(hits) == 2 and all(c["prompt_tokens"] == 0 and c["cost_usd"] == 0.0 for c in hits)


@pytest.mark.parametrize("engine", ENGINES)
def test_injected_retryable_errors_are_retries(run, sim, engine):
    sim.configure(error_every=3)
    lm = make_lm(sim, engine, num_retries=3)
    dspy.configure(lm=lm)
    program = dspy.Predict("question -> answer")
    for i in range(4):
        program(question=f"What is {i} + 3? {nonce()}")
    stats = sim.stats()
    delta = run.delta()
    assert stats["failed"] >= 1
    assert_matches_truth(delta, stats, history=lm.history, retries=stats["failed"])
    assert delta["totals"]["errors"] == 0


@pytest.mark.parametrize("engine", ENGINES)
def test_history_disabled_changes_nothing(run, sim, engine):
    lm = make_lm(sim, engine)
    dspy.configure(lm=lm, disable_history=True)
    RAG()(question=f"What is 3 + 3? {nonce()}")
    delta = run.delta()
    assert lm.history == []
    assert_matches_truth(delta, sim.stats())
    assert delta["totals"]["calls"] == 2


def test_a_failing_call_is_an_error_and_the_program_sees_its_own_exception(run, sim):
    lm = dspy.LM(MODEL, api_base="http://127.0.0.1:9/v1", api_key="x", cache=False, num_retries=0)
    dspy.configure(lm=lm)
    with pytest.raises(Exception) as raised:
        dspy.Predict("question -> answer")(question=f"unreachable {nonce()}")
    assert "dspy_top" not in repr(raised.value)
    delta = run.delta()
    assert delta["totals"]["errors"] == 1 and delta["totals"]["calls"] == 1
    assert delta["calls"][-1]["error"] is not None


def test_outputs_are_identical_with_and_without_dspy_top(sim):
    """Same program, same questions: instrumented and uninstrumented answers agree exactly."""
    import subprocess
    import sys

    script = (
        "import os, json\nos.environ['LITELLM_LOCAL_MODEL_COST_MAP']='True'\nimport dspy\n"
        "if os.environ.get('WITH_TOP'):\n    import dspy_top; dspy_top.instrument()\n"
        f"lm = dspy.LM({MODEL!r}, api_base={sim.base_url!r}, api_key='sim', cache=False)\n"
        "dspy.configure(lm=lm)\np = dspy.ChainOfThought('question -> answer')\n"
        "print(json.dumps([dict(p(question=f'What is {i} + 11?')) for i in range(4)]))\n"
    )
    outputs = []
    for flag in ("", "1"):
        env = {**os.environ, "WITH_TOP": flag}
        env.pop("DSPY_TOP", None)
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1]
