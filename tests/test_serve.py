"""`dspy-top serve` without the outside engines: its labels and buckets, its /metrics as Prometheus parses
it, and bad input (a port in use, an unreachable OTLP endpoint, a job speaking an older protocol).

The jobs here are fake processes on real sockets (tests/helpers/fake_server.py); the real DSPy jobs,
Prometheus and the OTLP receivers are in test_serve_engines.py.
"""

from __future__ import annotations

import os
import socket
import time

import pytest

from dspy_top import latency
from dspy_top.model.counters import Counters, total
from dspy_top.serve.figures import LATENCY_BOUNDS, cumulative_buckets
from dspy_top.serve.labels import OTHER, bounded, job_name, split_model
from dspy_top.serve.otlp_export import endpoint_for
from tests.helpers.fake_server import FakeServer, counters, hello, stats
from tests.helpers.jobs import runtime_dir
from tests.helpers.serve import Serve, free_port, wait_for

# --- pure ------------------------------------------------------------------------------------


def test_job_names_come_from_the_command_line():
    assert job_name(["/home/me/train.py", "--epochs", "3"]) == "train.py"
    assert job_name(["/venv/lib/python3.11/site-packages/mypkg/__main__.py"]) == "mypkg"
    assert job_name(["-c"]) == job_name([]) == "python"


def test_providers_follow_the_genai_conventions():
    assert split_model("openai/gpt-4o-mini") == ("openai", "gpt-4o-mini")
    assert split_model("bedrock/anthropic.claude-3") == ("aws.bedrock", "anthropic.claude-3")
    assert split_model("vertex_ai/gemini-1.5-pro") == ("gcp.vertex_ai", "gemini-1.5-pro")
    assert split_model("gpt-4o") == ("openai", "gpt-4o")
    assert split_model("my-local-model") == ("unknown", "my-local-model")


def _counters(calls: int) -> Counters:
    return Counters(calls=calls, prompt_tokens=10 * calls, cost_usd=0.001 * calls, latency_s=0.5 * calls,
                    latency_hist={20: calls})


def test_modules_past_the_limit_fold_into_other_and_nothing_is_lost():
    modules = [(f"Program.m{n}", _counters(n + 1)) for n in range(60)] + [("(other)", _counters(7))]
    kept = bounded(modules, 50)
    assert len(kept) == 51 and kept[-1][0] == OTHER
    assert {name for name, _ in kept[:-1]} == {f"Program.m{n}" for n in range(10, 60)}  # the busiest 50
    whole, folded = total(c for _, c in modules), total(c for _, c in kept)
    assert (folded.calls, folded.prompt_tokens, folded.latency_hist) == (whole.calls, whole.prompt_tokens,
                                                                         whole.latency_hist)
    assert folded.cost_usd == pytest.approx(whole.cost_usd)
    assert bounded(modules[:3], 50) == modules[:3]  # under the limit: as they are


def test_latency_buckets_are_exact_cumulative_counts():
    values = [0.004, 0.015, 0.016, 0.017, 0.3, 2.0, 2.0, 99.0, 400.0]
    hist: dict[int, int] = {}
    for value in values:
        bucket = latency.bucket_of(value)
        hist[bucket] = hist.get(bucket, 0) + 1
    counts, count = cumulative_buckets(hist)
    assert count == len(values)
    assert counts == [sum(1 for v in values if v <= bound) for bound in LATENCY_BOUNDS]
    # Each bound is the sketch's bucket edge at or just above 16 ms · 2^n (within 2%).
    assert all(0.016 * 2 ** n <= bound < 1.02 * 0.016 * 2 ** n for n, bound in enumerate(LATENCY_BOUNDS))
    assert len(LATENCY_BOUNDS) == 15 and LATENCY_BOUNDS[-1] == pytest.approx(262.144, rel=0.02)


def test_otlp_endpoints_follow_the_standard_variables():
    assert endpoint_for("traces", None, {}) == "http://localhost:4318/v1/traces"
    assert endpoint_for("metrics", "http://c:4318/", {}) == "http://c:4318/v1/metrics"
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://base:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t/x"}
    assert endpoint_for("traces", None, env) == "http://t/x"
    assert endpoint_for("metrics", None, env) == "http://base:1/v1/metrics"
    assert endpoint_for("metrics", None, {"OTEL_METRICS_EXPORTER": "none"}) is None


def test_otel_traces_sampler_keeps_or_leaves_whole_traces(monkeypatch):
    from opentelemetry.sdk.resources import Resource

    from dspy_top.model.calls import CallSummary
    from dspy_top.serve.otlp_spans import SpanBuilder

    call = CallSummary("/run/1.sock", 1, 7, time.time(), 0.5, "P.predict", "Predict", "openai/gpt-4o-mini", 10, 2, 0,
                       0.0001, None, False, 0, None, None, None, ())
    span = SpanBuilder(Resource({}), 0).call(call)
    assert span.name == "chat gpt-4o-mini" and span.attributes["gen_ai.usage.input_tokens"] == 10
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    builder = SpanBuilder(Resource({}), 0)
    assert builder.call(call) is None and builder.sampled_out == 1


# --- the real command, fake jobs ------------------------------------------------------------------


@pytest.fixture
def runtime():
    directory = runtime_dir()
    directory.chmod(0o700)
    return directory


def _fake_job(runtime, pid: int, calls: int, modules: int = 2, **hello_extra) -> FakeServer:
    """A job on `<pid>.sock` (the pid must be alive: discovery skips dead ones) with `modules` modules."""
    entries = [{"path": f"Job.m{n}", "class": "Predict", "chain": ["Job", "Predict"], **counters(calls)}
               for n in range(modules)]
    frame = stats(calls * modules)
    frame["modules"] = entries
    frame["totals"] = counters(calls * modules)
    frame["models"] = [{"model": "openai/gpt-4o-mini", **counters(calls * modules)}]
    return FakeServer(runtime / f"{pid}.sock", [hello(pid=pid, argv=["/srv/fake_train.py"], **hello_extra),
                                                {"t": "snapshot", "seq": 0, "calls": [], "stats": frame}])


@pytest.mark.slow
def test_metrics_carry_every_family_with_exact_totals_and_bounded_modules(runtime):
    job = _fake_job(runtime, os.getpid(), calls=3, modules=8)
    serve = Serve(runtime, "--prometheus", "127.0.0.1:0", "--hostname", "box-1", "--max-modules", "5")
    try:
        serve.expect(rf"job {os.getpid()} \(fake_train.py\) seen")
        calls = serve.samples("dspy_lm_calls_total", host="box-1", job="fake_train.py")
        assert sum(calls.values()) == 24
        modules = sorted(dict(key)["module"] for key in calls)
        assert len(modules) == 6 and "other" in modules  # 5 busiest + other
        assert calls[tuple(sorted({"host": "box-1", "job": "fake_train.py", "pid": str(os.getpid()),
                                   "module": "other"}.items()))] == 9
        assert sum(serve.samples("dspy_lm_model_calls_total", model="openai/gpt-4o-mini").values()) == 24
        assert sum(serve.samples("dspy_lm_tokens_total", type="input").values()) == 2400
        assert sum(serve.samples("dspy_lm_call_duration_seconds_count").values()) == 24
        assert sum(serve.samples("dspy_lm_call_duration_seconds_sum").values()) == pytest.approx(12.0)
        assert list(serve.samples("dspy_job_up").values()) == [1.0]
        text = serve.scrape()
        for family in ("dspy_lm_cost_usd_total", "dspy_lm_cost_saved_usd_total", "dspy_lm_cache_hits_total",
                       "dspy_lm_errors_total", "dspy_lm_retries_total", "dspy_lm_unpriced_calls_total",
                       "dspy_lm_in_flight", "dspy_lm_call_duration_seconds_bucket", "dspy_job_start_time_seconds"):
            assert f"\n{family}{{" in text, family
        job.send({"t": "exit", "at": time.time(), "stats": {**stats(30), "models": []}, "returncode": 0})
        serve.expect(rf"job {os.getpid()} \(fake_train.py\) ended \(exit 0\): 30 calls")
        assert list(serve.samples("dspy_job_up").values()) == [0.0]  # kept for --keep-ended
    finally:
        serve.stop()
        job.stop()


@pytest.mark.slow
def test_ended_jobs_go_after_keep_ended(runtime):
    job = _fake_job(runtime, os.getpid(), calls=1)
    serve = Serve(runtime, "--prometheus", "0", "--keep-ended", "1")
    try:
        serve.expect("seen")
        job.send({"t": "exit", "at": time.time(), "stats": stats(2), "returncode": 0})
        serve.expect("ended")
        wait_for(lambda: not serve.samples("dspy_job_up"), 20, "the ended job's series to go")
    finally:
        serve.stop()
        job.stop()


@pytest.mark.slow
def test_a_port_in_use_is_said_and_the_other_exporter_goes_on(runtime):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        alone = Serve(runtime, "--prometheus", str(port))
        assert alone.proc.wait(30) == 2
        alone.expect(rf"cannot serve Prometheus metrics on 127.0.0.1:{port}: Address already in use")
        alone.expect("nothing left to serve")
        both = Serve(runtime, "--prometheus", str(port), "--otlp", f"http://127.0.0.1:{free_port()}",
                     env={"OTEL_METRIC_EXPORT_INTERVAL": "60000", "OTEL_EXPORTER_OTLP_TIMEOUT": "1"})
        try:
            both.expect("cannot serve Prometheus metrics")
            both.expect("pushing OTLP spans to")
            both.expect("watching the jobs")
            assert both.proc.poll() is None
        finally:
            assert both.stop() == 0
    finally:
        taken.close()


@pytest.mark.slow
def test_an_unreachable_otlp_endpoint_is_said_once_and_prometheus_goes_on(runtime):
    job = _fake_job(runtime, os.getpid(), calls=2)
    dead = f"http://127.0.0.1:{free_port()}"
    serve = Serve(runtime, "--prometheus", "0", "--otlp", dead,
                  env={"OTEL_METRIC_EXPORT_INTERVAL": "300", "OTEL_EXPORTER_OTLP_TIMEOUT": "2"})
    try:
        serve.expect(rf"cannot export OTLP metrics to {dead}/v1/metrics: .*(Connection refused|connect).*still trying")
        assert sum(serve.samples("dspy_lm_calls_total").values()) == 4
        time.sleep(1.0)
        assert sum("cannot export OTLP metrics" in line for line in serve.lines) == 1  # said once, not per retry
    finally:
        serve.stop()
        job.stop()


@pytest.mark.slow
def test_a_job_speaking_an_older_protocol_is_refused_clearly_and_the_others_are_served(runtime):
    old = FakeServer(runtime / f"{os.getppid()}.sock", [{**hello(pid=os.getppid()), "v": 1}])
    good = _fake_job(runtime, os.getpid(), calls=5)
    serve = Serve(runtime, "--prometheus", "0")
    try:
        serve.expect(rf"job {os.getppid()} at .*: cannot attach: .*protocol version 1; this viewer speaks 2 "
                     r"\(the other jobs are served\)")
        serve.expect(rf"job {os.getpid()} \(fake_train.py\) seen")
        calls = serve.samples("dspy_lm_calls_total")
        assert {dict(key)["pid"] for key in calls} == {str(os.getpid())}
        assert sum(calls.values()) == 10
    finally:
        serve.stop()
        old.stop()
        good.stop()


def test_nothing_to_export_is_a_usage_error(runtime):
    serve = Serve(runtime)
    assert serve.proc.wait(30) == 2
    serve.expect("nothing to export: give --prometheus")
