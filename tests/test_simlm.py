"""The simulated LM: its HTTP contract, its own ledger, and real DSPy programs on both engines."""

import os

# No network: litellm must use its bundled price table (set before dspy imports it).
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import asyncio
import http.client
import json
import math
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Literal

import dspy
import pytest

from dspy_top.simlm import SimLM
from dspy_top.simlm.arithmetic import accuracy
from dspy_top.simlm.completion import complete
from dspy_top.simlm.latency import plan_latency

ENGINES = [pytest.param(None, id="native"), pytest.param("litellm", id="litellm")]
QUESTION = [{"role": "user", "content": "What is 17 + 25?"}]


# -- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def sim_server():
    with SimLM(latency_scale=0.0) as sim:
        yield sim


@pytest.fixture
def sim(sim_server):
    """The shared server, with a zeroed ledger and default knobs for each test."""
    sim_server.configure(latency_scale=0.0, error_every=None, error_rate=0.0, error_status=503, cached_fraction=0.0)
    sim_server.reset()
    return sim_server


def call(url: str, payload: dict | None = None, method: str | None = None):
    """(status, headers, raw body) of one HTTP exchange, errors included."""
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def chat(sim: SimLM, messages=QUESTION, model="gpt-4o-mini", **extra):
    status, headers, raw = call(f"{sim.base_url}/chat/completions", {"model": model, "messages": messages, **extra})
    return status, headers, raw


def make_lm(sim: SimLM, engine):
    options = {} if engine is None else {"engine": engine}
    return dspy.LM("openai/gpt-4o-mini", api_base=sim.base_url, api_key="sim", cache=False, **options)


def assert_ledger_matches_history(sim: SimLM, lm):
    """The server's bill equals what DSPy recorded, call for call and token for token."""
    stats = sim.stats()
    usages = [entry.get("usage") or {} for entry in lm.history]
    assert stats["ok"] == len(lm.history)
    assert stats["prompt_tokens"] == sum(u.get("prompt_tokens", 0) for u in usages)
    assert stats["completion_tokens"] == sum(u.get("completion_tokens", 0) for u in usages)
    assert stats["models"]["gpt-4o-mini"]["ok"] == len(lm.history)


def sse_events(raw: bytes) -> list:
    frames = [f for f in raw.decode().split("\n\n") if f]
    assert all(f.startswith("data: ") for f in frames)
    return [f[len("data: ") :] for f in frames]


# -- the HTTP contract --------------------------------------------------------------------


def test_chat_completion_is_openai_shaped_and_echoes_the_model(sim):
    status, headers, raw = chat(sim)
    body = json.loads(raw)
    assert status == 200
    assert int(headers["Content-Length"]) == len(raw)
    assert body["object"] == "chat.completion"
    assert body["model"] == "gpt-4o-mini"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert body["choices"][0]["message"]["content"]
    assert body["choices"][0]["finish_reason"] == "stop"


def test_usage_follows_the_documented_formula(sim):
    messages = [{"role": "system", "content": "You are terse."}, *QUESTION]
    body = json.loads(chat(sim, messages)[2])
    usage = body["usage"]
    reply = body["choices"][0]["message"]["content"]
    assert usage["prompt_tokens"] == sum(math.ceil(len(m["content"]) / 4) + 4 for m in messages)
    assert usage["completion_tokens"] == max(1, math.ceil(len(reply) / 4))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert "prompt_tokens_details" not in usage


def test_same_request_same_answer_and_usage(sim):
    first, second = (json.loads(chat(sim)[2]) for _ in range(2))
    assert first["choices"] == second["choices"]
    assert first["usage"] == second["usage"]
    other = json.loads(chat(sim, [{"role": "user", "content": "Tell me about Lisbon."}])[2])
    assert other["choices"][0]["message"]["content"] != first["choices"][0]["message"]["content"]


def test_cached_tokens_reported_when_configured(sim):
    sim.configure(cached_fraction=0.5)
    usage = json.loads(chat(sim)[2])["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"] // 2
    assert sim.stats()["cached_tokens"] == usage["prompt_tokens"] // 2


def test_both_paths_and_the_model_list(sim):
    status, _, _ = call(f"{sim.root_url}/chat/completions", {"model": "sim-local", "messages": QUESTION})
    assert status == 200
    status, _, raw = call(f"{sim.base_url}/models")
    assert status == 200
    assert "gpt-4o-mini" in [m["id"] for m in json.loads(raw)["data"]]
    assert call(f"{sim.base_url}/nowhere", {})[0] == 404


def test_ledger_counts_per_model_and_resets(sim):
    chat(sim)
    chat(sim, model="sim-local")
    chat(sim, model="sim-local", stream=True)
    status, _, raw = call(f"{sim.root_url}/_sim/stats")
    over_http = json.loads(raw)
    assert status == 200
    assert over_http == sim.stats()
    assert over_http["requests"] == 3 and over_http["ok"] == 3 and over_http["failed"] == 0
    assert over_http["streaming"] == 1
    assert over_http["models"]["sim-local"]["requests"] == 2
    assert over_http["total_tokens"] == over_http["prompt_tokens"] + over_http["completion_tokens"] > 0

    assert call(f"{sim.root_url}/_sim/reset", {})[0] == 200
    zeroed = sim.stats()
    assert zeroed["requests"] == zeroed["prompt_tokens"] == zeroed["completion_tokens"] == 0
    assert zeroed["models"] == {}


def test_error_every_fails_with_a_retry_now_503_and_bills_nothing(sim):
    status, _, raw = call(f"{sim.root_url}/_sim/config", {"error_every": 2})
    assert status == 200 and json.loads(raw)["error_every"] == 2
    outcomes = [chat(sim) for _ in range(4)]
    assert [status for status, _, _ in outcomes] == [200, 503, 200, 503]
    _, headers, raw = outcomes[1]
    assert headers["Retry-After"] == "0"
    assert int(headers["Content-Length"]) == len(raw)
    assert json.loads(raw)["error"]["type"] == "server_error"
    stats = sim.stats()
    assert stats["requests"] == 4 and stats["ok"] == 2
    assert stats["failed_by_status"] == {"503": 2}
    billed = json.loads(outcomes[0][2])["usage"]
    assert stats["prompt_tokens"] == 2 * billed["prompt_tokens"]


def test_error_rate_is_deterministic_and_429_is_available(sim):
    sim.configure(error_rate=0.5, error_seed=3, error_status=429)
    prompts = [[{"role": "user", "content": f"What is {i} + 2?"}] for i in range(12)]
    first = [chat(sim, p)[0] for p in prompts]
    sim.reset()
    assert [chat(sim, p)[0] for p in prompts] == first
    assert set(first) == {200, 429}
    assert sim.stats()["failed_by_status"] == {"429": first.count(429)}


def test_bad_config_is_refused(sim):
    assert call(f"{sim.root_url}/_sim/config", {"error_rate": 2})[0] == 400
    assert call(f"{sim.root_url}/_sim/config", {"no_such_knob": 1})[0] == 400
    assert sim.config.error_rate == 0.0


def test_streaming_sends_sse_then_usage_then_done(sim):
    plain = json.loads(chat(sim)[2])
    status, headers, raw = chat(sim, stream=True, stream_options={"include_usage": True})
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream"
    assert int(headers["Content-Length"]) == len(raw)
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == plain["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == plain["usage"]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"

    _, _, raw = chat(sim, stream=True)
    assert not any('"usage": {' in e for e in sse_events(raw))
    assert sim.stats()["streaming"] == 2


def test_keep_alive_connections_serve_many_concurrent_clients(sim):
    sim.configure(latency_scale=0.01)
    failures = []

    def client(worker: int):
        connection = http.client.HTTPConnection("127.0.0.1", sim.port, timeout=10)
        try:
            for turn in range(4):
                body = json.dumps(
                    {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"What is {worker} + {turn}?"}]}
                )
                connection.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(response.status)
        except Exception as exc:  # noqa: BLE001 - any failure is the finding
            failures.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=client, args=(w,)) for w in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert failures == []
    assert sim.stats()["ok"] == 96


def test_latency_is_deterministic_scaled_and_real(sim):
    assert plan_latency("abc", 100, 50, 1.0) == plan_latency("abc", 100, 50, 1.0)
    assert plan_latency("abc", 100, 50, 0.0).total == 0.0
    medians = sorted(plan_latency(str(i), 0, 0, 1.0).first_token for i in range(201))
    assert 0.2 < medians[100] < 0.4 and medians[-1] > medians[100] * 1.5
    sim.configure(latency_scale=0.2)
    started = time.perf_counter()
    chat(sim)
    assert time.perf_counter() - started > 0.03


def test_arithmetic_accuracy_grows_with_demos():
    assert accuracy(0) == pytest.approx(0.4) and accuracy(4) == pytest.approx(0.9) and accuracy(9) == pytest.approx(0.9)
    adapter = dspy.ChatAdapter()
    signature = dspy.Signature("question -> answer")
    demos = [{"question": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(4)]

    def correct_share(with_demos):
        right = 0
        for i in range(120):
            messages = adapter.format(signature, with_demos, {"question": f"What is {i} + {2 * i}?"})
            reply = complete({"model": "gpt-4o-mini", "messages": messages}).texts[0]
            right += adapter.parse(signature, reply)["answer"] == str(3 * i)
        return right / 120

    bare, coached = correct_share([]), correct_share(demos)
    assert 0.25 < bare < 0.55 and coached > 0.8


def test_cli_prints_its_base_url_first_and_serves(tmp_path):
    process = subprocess.Popen(
        [sys.executable, "-m", "dspy_top.simlm", "--port", "0", "--latency-scale", "0", "--error-every", "5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
        status, _, raw = call(base_url.removesuffix("/v1") + "/_sim/config")
        assert status == 200 and json.loads(raw)["error_every"] == 5
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0


def test_simlm_imports_only_the_standard_library():
    probe = "import sys, dspy_top.simlm; print(sorted(m for m in ('dspy', 'litellm', 'textual') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# -- real DSPy programs, on the native engine and on LiteLLM ------------------------------


@pytest.mark.parametrize("engine", ENGINES)
def test_predict_and_chain_of_thought(sim, engine):
    lm = make_lm(sim, engine)
    with dspy.context(lm=lm):
        answer = dspy.Predict("question -> answer")(question="What is the capital of France?").answer
        thought = dspy.ChainOfThought("question -> answer")(question="What is 17 + 25?")
    assert answer.strip()
    assert "17 + 25" in thought.reasoning and thought.answer.strip()
    assert lm.history[-1]["cost"] > 0  # gpt-4o-mini is in the real price table
    assert_ledger_matches_history(sim, lm)


class Triage(dspy.Signature):
    """Triage a support ticket."""

    ticket: str = dspy.InputField()
    priority: int = dspy.OutputField()
    urgent: bool = dspy.OutputField()
    tags: list[str] = dspy.OutputField()
    team: Literal["billing", "shipping", "technical"] = dspy.OutputField()


@pytest.mark.parametrize(
    "adapter", [dspy.ChatAdapter(use_json_adapter_fallback=False), dspy.JSONAdapter()], ids=["chat", "json"]
)
@pytest.mark.parametrize("engine", ENGINES)
def test_typed_outputs_parse(sim, engine, adapter):
    lm = make_lm(sim, engine)
    with dspy.context(lm=lm, adapter=adapter):
        result = dspy.Predict(Triage)(ticket="My parcel to Berlin never arrived.")
    assert isinstance(result.priority, int) and isinstance(result.urgent, bool)
    assert isinstance(result.tags, list) and all(isinstance(tag, str) for tag in result.tags)
    assert result.team in ("billing", "shipping", "technical")
    assert_ledger_matches_history(sim, lm)


@pytest.mark.parametrize("engine", ENGINES)
def test_json_adapter_sends_a_schema_and_gets_json(sim, engine):
    lm = make_lm(sim, engine)
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter()):
        result = dspy.ChainOfThought("question -> answer")(question="What is 6 * 7?")
    assert result.answer.strip() and result.reasoning.strip()
    assert lm.history[-1]["kwargs"]["response_format"] is not None
    assert json.loads(lm.history[-1]["outputs"][0])["answer"] == result.answer
    assert_ledger_matches_history(sim, lm)


@pytest.mark.parametrize("engine", ENGINES)
def test_react_calls_its_tool_then_finishes(sim, engine):
    calls = []

    def weather(city: str) -> str:
        """Current weather for a city."""
        calls.append(city)
        return f"It is sunny in {city}."

    lm = make_lm(sim, engine)
    with dspy.context(lm=lm):
        result = dspy.ReAct("question -> answer", tools=[weather])(question="What is the weather in Tokyo?")
    assert calls == ["Tokyo"]
    assert result.trajectory["tool_name_0"] == "weather"
    assert result.trajectory["tool_args_0"] == {"city": "Tokyo"}
    assert result.trajectory["tool_name_1"] == "finish"
    assert "sunny" in result.answer
    assert len(lm.history) == 3  # two agent steps, one extract
    assert_ledger_matches_history(sim, lm)


@pytest.mark.parametrize("engine", ENGINES)
def test_streamify_streams_and_the_bill_still_matches(sim, engine):
    lm = make_lm(sim, engine)
    program = dspy.streamify(
        dspy.ChainOfThought("question -> answer"),
        stream_listeners=[dspy.streaming.StreamListener(signature_field_name="reasoning")],
    )

    async def run():
        return [item async for item in program(question="What is 12 + 30?")]

    # DSPy's LiteLLM engine asks the server for stream usage only when tracking usage.
    with dspy.context(lm=lm, track_usage=True):
        items = asyncio.run(run())
    assert isinstance(items[-1], dspy.Prediction)
    streamed = "".join(i.chunk for i in items if isinstance(i, dspy.streaming.StreamResponse))
    assert streamed.strip() == items[-1].reasoning.strip()
    assert sim.stats()["streaming"] == 1
    assert_ledger_matches_history(sim, lm)


@pytest.mark.parametrize("engine", ENGINES)
def test_injected_errors_are_retried_at_once(sim, engine):
    lm = make_lm(sim, engine)
    with dspy.context(lm=lm):
        dspy.Predict("question -> answer")(question="Warm up?")  # LiteLLM's first call imports for seconds
    lm.history.clear()
    sim.reset()
    sim.configure(error_every=2)
    started = time.perf_counter()
    with dspy.context(lm=lm):
        for i in range(3):
            assert dspy.Predict("question -> answer")(question=f"What is {i} + 9?").answer
    # Without Retry-After: 0, DSPy would sleep at least 1 s per retry.
    assert time.perf_counter() - started < 1.0
    stats = sim.stats()
    assert stats["failed_by_status"] == {"503": 2} and stats["requests"] == 5
    assert_ledger_matches_history(sim, lm)


def test_stream_options_on_a_plain_request_is_refused_like_openai_does():
    import json
    import urllib.error
    import urllib.request

    with SimLM(latency_scale=0.0) as sim:
        body = {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "hi"}],
            "stream_options": {"include_usage": True},
        }
        request = urllib.request.Request(
            sim.base_url + "/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        try:
            urllib.request.urlopen(request, timeout=10)
            raise AssertionError("expected a 400")
        except urllib.error.HTTPError as exc:
            assert exc.code == 400 and "stream_options" in exc.read().decode()


def test_a_client_that_resets_its_connections_leaves_no_traceback(capfd):
    """Quitting `dspy-top demo` kills the job with idle keep-alive connections open: the simulated LM
    (in dspy-top's own process) sees them reset mid-read, and must not print a traceback on the terminal."""
    import socket
    import struct

    with SimLM(latency_scale=0.0) as sim:
        server = sim._server
        for partial in (b"", b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"):
            client = socket.create_connection(("127.0.0.1", sim.port))
            client.sendall(partial)
            deadline = time.monotonic() + 10
            while not server._connections and time.monotonic() < deadline:
                time.sleep(0.01)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
            client.close()
            deadline = time.monotonic() + 10
            while server._connections and time.monotonic() < deadline:
                time.sleep(0.01)
            assert not server._connections
        with urllib.request.urlopen(f"{sim.root_url}/_sim/health", timeout=10) as answer:  # still serving
            assert answer.status == 200
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err, err
