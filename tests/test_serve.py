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
    return Counters(
        calls=calls, prompt_tokens=10 * calls, cost_usd=0.001 * calls, latency_s=0.5 * calls, latency_hist={20: calls}
    )


def test_modules_past_the_limit_fold_into_other_and_nothing_is_lost():
    modules = [(f"Program.m{n}", _counters(n + 1)) for n in range(60)] + [("(other)", _counters(7))]
    kept = bounded(modules, 50)
    assert len(kept) == 51 and kept[-1][0] == OTHER
    assert {name for name, _ in kept[:-1]} == {f"Program.m{n}" for n in range(10, 60)}  # the busiest 50
    whole, folded = total(c for _, c in modules), total(c for _, c in kept)
    assert (folded.calls, folded.prompt_tokens, folded.latency_hist) == (
        whole.calls,
        whole.prompt_tokens,
        whole.latency_hist,
    )
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
    assert all(0.016 * 2**n <= bound < 1.02 * 0.016 * 2**n for n, bound in enumerate(LATENCY_BOUNDS))
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

    call = CallSummary(
        "/run/1.sock",
        1,
        7,
        time.time(),
        0.5,
        "P.predict",
        "Predict",
        "openai/gpt-4o-mini",
        10,
        2,
        0,
        0.0001,
        None,
        False,
        0,
        None,
        None,
        None,
        (),
    )
    span = SpanBuilder(Resource({}), 0).call(call)
    assert span.name == "chat gpt-4o-mini" and span.attributes["gen_ai.usage.input_tokens"] == 10
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    builder = SpanBuilder(Resource({}), 0)
    assert builder.call(call) is None and builder.sampled_out == 1


def test_a_call_whose_usage_dspy_did_not_report_has_unknown_tokens_not_zero():
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.resources import Resource

    from dspy_top.model.calls import CallSummary
    from dspy_top.serve.otlp_metrics import OtlpMetrics
    from dspy_top.serve.otlp_spans import SpanBuilder

    metered = CallSummary(
        "/run/1.sock",
        1,
        7,
        time.time(),
        0.5,
        "P.predict",
        "Predict",
        "openai/gpt-4o-mini",
        10,
        2,
        0,
        0.0001,
        None,
        False,
        0,
        None,
        None,
        None,
        (),
    )
    unmetered = metered._replace(id=8, prompt_tokens=0, completion_tokens=0, usage_known=False)
    span = SpanBuilder(Resource({}), 0).call(unmetered)
    assert "gen_ai.usage.input_tokens" not in span.attributes and "gen_ai.usage.output_tokens" not in span.attributes
    assert span.attributes["dspy.usage_known"] is False
    assert SpanBuilder(Resource({}), 0).call(metered).attributes["gen_ai.usage.input_tokens"] == 10

    reader = InMemoryMetricReader()
    metrics = OtlpMetrics(None, Resource({}), list, reader=reader)
    metrics.record(metered, "job.py")
    metrics.record(unmetered, "job.py")
    exported = {
        metric.name: metric.data.data_points
        for resource in reader.get_metrics_data().resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
    }
    assert sum(point.count for point in exported["gen_ai.client.operation.duration"]) == 2  # both calls were made
    by_type = {
        dict(point.attributes)["gen_ai.token.type"]: (point.count, point.sum)
        for point in exported["gen_ai.client.token.usage"]
    }
    assert by_type == {"input": (1, 10), "output": (1, 2)}  # the unmetered call's tokens are not 0s
    metrics.shutdown()


def test_the_span_queue_never_blocks_and_counts_what_it_drops():
    import threading

    from opentelemetry.sdk.trace.export import SpanExportResult

    from dspy_top.serve.otlp_export import SpanQueue

    class StalledEndpoint:  # an exporter whose endpoint hangs until released
        def __init__(self):
            self.entered, self.release, self.spans = threading.Event(), threading.Event(), 0

        def export(self, batch):
            self.entered.set()
            self.release.wait(30)
            self.spans += len(batch)
            return SpanExportResult.SUCCESS

        def shutdown(self):
            pass

    endpoint = StalledEndpoint()
    queue = SpanQueue(endpoint, capacity=100, batch=10, delay=0.01).start()
    queue.offer(list(range(10)))
    assert endpoint.entered.wait(10)  # the export thread holds the first batch, stalled
    for _ in range(10):
        queue.offer(list(range(20)))  # returns at once: past 100 queued, spans are dropped
    assert queue.dropped == 100
    endpoint.release.set()
    wait_for(lambda: queue.exported == 110, 10, "the queued spans exported once the endpoint answers")
    queue.stop()
    assert (endpoint.spans, queue.dropped, queue.failed) == (110, 100, 0)


def test_a_failed_call_is_an_error_span_with_its_type():
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.trace import StatusCode

    from dspy_top.model.calls import CallSummary
    from dspy_top.serve.otlp_spans import SpanBuilder

    call = CallSummary(
        "/run/1.sock",
        1,
        7,
        time.time(),
        0.5,
        "P.predict",
        "Predict",
        "openai/gpt-4o-mini",
        0,
        0,
        0,
        None,
        None,
        False,
        2,
        "RateLimitError",
        "rate limited: retry later",
        None,
        (),
    )
    span = SpanBuilder(Resource({}), 0).call(call)
    assert span.status.status_code == StatusCode.ERROR and span.status.description == "rate limited: retry later"
    assert span.attributes["error.type"] == "RateLimitError" and span.attributes["dspy.retries"] == 2
    assert "dspy.cost_usd" not in span.attributes  # unknown, not 0


def _view(calls: int, state: str = "running"):
    from dspy_top.serve.watch import JobView

    modules = ((f"P.m{n}", _counters(calls)) for n in range(3))
    return JobView(
        key="/run/7.sock",
        pid=7,
        job="train.py",
        command="python train.py",
        state=state,
        status=state,
        started_at=1.0,
        ended_at=None,
        totals=_counters(3 * calls),
        modules=tuple(modules),
        models=(("openai/gpt-4o-mini", _counters(3 * calls)),),
        scopes=(),
        budget_limits=(),
        dropped=0,
        attached=True,
    )


def test_a_scrape_answers_the_text_rendered_ahead_and_a_job_ending_is_rendered_at_once():
    from dspy_top.serve.prometheus import Exposition

    read = []

    def jobs():
        read.append(1)
        return [_view(1)]

    exposition = Exposition(jobs, host="box", every=3600)
    exposition.prepare([_view(2)], version=1)
    assert exposition.rendered is None  # no one scrapes yet: nothing rendered ahead
    assert 'module="P.m0"} 1\n' in exposition.body().decode() and len(read) == 1  # the first scrape renders
    exposition.prepare([_view(2)], version=2)
    body = exposition.body().decode()
    assert 'module="P.m0"} 2\n' in body and len(read) == 1  # rendered ahead: the scrape read no job
    exposition.prepare([_view(5)], version=3)  # changed within `every`: the next rendering takes it
    assert exposition.body().decode() == body
    exposition.prepare([_view(5, state="ended")], version=4)  # a job's state changed: rendered at once
    body = exposition.body().decode()
    assert 'module="P.m0"} 5\n' in body and 'dspy_job_up{host="box",pid="7",job="train.py"} 0\n' in body
    assert len(read) == 1


# --- the real command, fake jobs ------------------------------------------------------------------


@pytest.fixture
def runtime():
    directory = runtime_dir()
    directory.chmod(0o700)
    return directory


def _fake_job(
    runtime, pid: int, calls: int, modules: int = 2, unmetered: int = 0, unpriced: int = 0, **hello_extra
) -> FakeServer:
    """A job on `<pid>.sock` (the pid must be alive: discovery skips dead ones) with `modules` modules, each
    with `calls` calls of which `unmetered` had no usage reported and `unpriced` no price."""
    extra = {"unmetered_calls": unmetered, "unpriced_calls": unpriced}
    entries = [
        {"path": f"Job.m{n}", "class": "Predict", "chain": ["Job", "Predict"], **counters(calls, **extra)}
        for n in range(modules)
    ]
    whole = {name: value * modules for name, value in extra.items()}
    frame = stats(calls * modules)
    frame["modules"] = entries
    frame["totals"] = counters(calls * modules, **whole)
    frame["models"] = [{"model": "openai/gpt-4o-mini", **counters(calls * modules, **whole)}]
    frame["budget"] = {
        "on_exceed": "warn",
        "alerts": [],
        "limits": [{"scope": "total", "name": "", "usd": 5.0}, {"scope": "module", "name": "Job.m0", "usd": 1.5}],
    }
    return FakeServer(
        runtime / f"{pid}.sock",
        [
            hello(pid=pid, argv=["/srv/fake_train.py"], **hello_extra),
            {"t": "snapshot", "seq": 0, "calls": [], "stats": frame},
        ],
    )


@pytest.mark.slow
def test_metrics_carry_every_family_with_exact_totals_and_bounded_modules(runtime):
    job = _fake_job(runtime, os.getpid(), calls=3, modules=8, unmetered=2, unpriced=1)
    serve = Serve(runtime, "--prometheus", "127.0.0.1:0", "--hostname", "box-1", "--max-modules", "5")
    try:
        serve.expect(rf"job {os.getpid()} \(fake_train.py\) seen")
        calls = serve.samples("dspy_lm_calls_total", host="box-1", job="fake_train.py")
        assert sum(calls.values()) == 24
        modules = sorted(dict(key)["module"] for key in calls)
        assert len(modules) == 6 and "other" in modules  # 5 busiest + other
        other = tuple(
            sorted({"host": "box-1", "job": "fake_train.py", "pid": str(os.getpid()), "module": "other"}.items())
        )
        assert calls[other] == 9
        assert sum(serve.samples("dspy_lm_model_calls_total", model="openai/gpt-4o-mini").values()) == 24
        assert sum(serve.samples("dspy_lm_tokens_total", type="input").values()) == 2400
        assert sum(serve.samples("dspy_lm_call_duration_seconds_count").values()) == 24
        assert sum(serve.samples("dspy_lm_call_duration_seconds_sum").values()) == pytest.approx(12.0)
        assert list(serve.samples("dspy_job_up").values()) == [1.0]
        unmetered = serve.samples("dspy_lm_unmetered_calls_total")
        assert sorted(unmetered.values()) == [2, 2, 2, 2, 2, 6] and unmetered[other] == 6  # 3 modules folded
        assert list(serve.samples("dspy_lm_model_unmetered_calls_total").values()) == [16]
        assert sum(serve.samples("dspy_lm_unpriced_calls_total").values()) == 8
        assert list(serve.samples("dspy_lm_model_unpriced_calls_total").values()) == [8]
        budget = {
            (dict(key)["scope"], dict(key)["name"]): value
            for key, value in serve.samples("dspy_job_budget_usd", pid=str(os.getpid())).items()
        }
        assert budget == {("total", ""): 5.0, ("module", "Job.m0"): 1.5}
        text = serve.scrape()
        # prometheus_client's parser reads the agent's own writer: every sample line, each family's type.
        from prometheus_client.parser import text_string_to_metric_families

        families = {family.name: family for family in text_string_to_metric_families(text)}
        assert sum(len(family.samples) for family in families.values()) == sum(
            1 for line in text.splitlines() if line and not line.startswith("#")
        )
        assert {
            name: families[name].type
            for name in (
                "dspy_lm_calls",
                "dspy_lm_unmetered_calls",
                "dspy_lm_in_flight",
                "dspy_lm_call_duration_seconds",
                "dspy_job_up",
            )
        } == {
            "dspy_lm_calls": "counter",
            "dspy_lm_unmetered_calls": "counter",
            "dspy_lm_in_flight": "gauge",
            "dspy_lm_call_duration_seconds": "histogram",
            "dspy_job_up": "gauge",
        }
        for family in (
            "dspy_lm_cost_usd_total",
            "dspy_lm_cost_saved_usd_total",
            "dspy_lm_cache_hits_total",
            "dspy_lm_errors_total",
            "dspy_lm_retries_total",
            "dspy_lm_unpriced_calls_total",
            "dspy_lm_in_flight",
            "dspy_lm_call_duration_seconds_bucket",
            "dspy_job_start_time_seconds",
        ):
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
        both = Serve(
            runtime,
            "--prometheus",
            str(port),
            "--otlp",
            f"http://127.0.0.1:{free_port()}",
            env={"OTEL_METRIC_EXPORT_INTERVAL": "60000", "OTEL_EXPORTER_OTLP_TIMEOUT": "1"},
        )
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
    serve = Serve(
        runtime,
        "--prometheus",
        "0",
        "--otlp",
        dead,
        env={"OTEL_METRIC_EXPORT_INTERVAL": "300", "OTEL_EXPORTER_OTLP_TIMEOUT": "2"},
    )
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
        serve.expect(
            rf"job {os.getppid()} at .*: cannot attach: .*protocol version 1; this viewer speaks 2 "
            r"\(the other jobs are served\)"
        )
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
