"""`dspy-top serve` feeding the real engines users run, started here on loopback: Prometheus (Debian's
package) scraping two agents and queried with PromQL, MLflow's tracking server taking the OTLP spans, and
VictoriaMetrics (Debian's package) taking the OTLP metrics, queried with PromQL.

Real DSPy jobs (tests/jobs/serve_job.py) call the simulated LM; every total is checked against the LM
server's own ledger. VictoriaMetrics takes OTLP metrics from 1.92 on: Debian 12's is 1.79, so
.ci/victoria-metrics unpacks Debian 13's (1.112) into .ci/engines/. (Debian's Prometheus is built without
its OTLP receiver; MLflow and Phoenix take traces only.) The MLflow test also decodes the metrics on the
wire with the OpenTelemetry protocol's own definitions (opentelemetry-proto): units and bounds as sent.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from dspy_top.serve.otlp_metrics import DURATION_BUCKETS, TOKEN_BUCKETS
from dspy_top.simlm import SimLM
from tests.helpers.otlp_receiver import OtlpReceiver
from tests.helpers.serve import Serve, ServeJob, free_port, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def sim():
    with SimLM(latency_scale=0.0) as server:
        yield server


def _runtime(tmp_path: Path, name: str) -> Path:
    # AF_UNIX paths are short: not under pytest's long tmp_path.
    directory = Path(os.path.realpath(__import__("tempfile").mkdtemp(prefix=f"dt{name}", dir="/tmp")))
    directory.chmod(0o700)
    return directory


def _answers(proc: subprocess.Popen, url: str, log: Path) -> bool:
    """Does an engine we started answer `url` with 200 yet? (It must not have exited.)"""
    if proc.poll() is not None:
        raise AssertionError(f"{proc.args[0]} exited: {log.read_text()[-3000:]}")
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


# --- Prometheus ------------------------------------------------------------------------------------


class Prometheus:
    """Debian's prometheus, scraping `targets` every second with honor_labels (our `job` label is the script's)."""

    def __init__(self, home: Path, targets: list[str]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.skip("Prometheus is not installed (Debian: apt-get install prometheus; .ci/run installs it)")
        self.port = free_port()
        config = home / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: dspy-top\n"
            "    honor_labels: true\n"
            f"    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
        )
        self.log = open(home / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={home / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.home = home
        wait_for(self._ready, 60, "Prometheus to be ready")

    def _ready(self) -> bool:
        return _answers(self.proc, f"http://127.0.0.1:{self.port}/-/ready", self.home / "prometheus.log")

    def query(self, promql: str) -> dict[tuple, float]:
        """An instant PromQL query over the HTTP API: {sorted label items: value}."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as answer:
            body = json.load(answer)
        assert body["status"] == "success", body
        return {tuple(sorted(item["metric"].items())): float(item["value"][1]) for item in body["data"]["result"]}

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return next(iter(result.values())) if result else None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()


def test_prometheus_sums_over_two_agents_equal_the_lm_servers_counts(sim, tmp_path):
    alpha_dir, beta_dir = _runtime(tmp_path, "a"), _runtime(tmp_path, "b")
    alpha = Serve(alpha_dir, "--prometheus", "127.0.0.1:0", "--hostname", "alpha")
    beta = Serve(beta_dir, "--prometheus", "127.0.0.1:0", "--hostname", "beta")
    jobs: list[ServeJob] = []
    prometheus = None
    try:
        targets = [agent.metrics_url.split("/")[2] for agent in (alpha, beta)]
        prometheus = Prometheus(tmp_path, targets)
        jobs = [
            ServeJob(alpha_dir, sim.base_url, "6", "--evaluate", "10"),
            ServeJob(beta_dir, sim.base_url, "4", "--optimize"),
            ServeJob(beta_dir, sim.base_url, "3"),
        ]
        truths = [job.truth() for job in jobs]
        server = sim.stats()
        calls = sum(truth["totals"]["calls"] for truth in truths)
        assert calls == server["requests"] == server["ok"] > 0  # no cache, no errors: one request per call

        def settled():
            return prometheus.scalar("sum(dspy_lm_calls_total)") == calls

        wait_for(settled, 60, "Prometheus to hold every call")
        assert prometheus.scalar("sum(dspy_lm_model_calls_total)") == calls
        assert prometheus.scalar('sum(dspy_lm_tokens_total{type="input"})') == server["prompt_tokens"]
        assert prometheus.scalar('sum(dspy_lm_tokens_total{type="output"})') == server["completion_tokens"]
        assert prometheus.scalar('sum(dspy_lm_model_tokens_total{type="input"})') == server["prompt_tokens"]
        assert prometheus.scalar("sum(dspy_lm_call_duration_seconds_count)") == calls
        cost = sum(truth["totals"]["cost_usd"] for truth in truths)
        assert prometheus.scalar("sum(dspy_lm_cost_usd_total)") == pytest.approx(cost, rel=1e-9) and cost > 0
        by_host = prometheus.query("sum by (host) (dspy_lm_calls_total)")
        assert by_host == {
            (("host", "alpha"),): truths[0]["totals"]["calls"],
            (("host", "beta"),): truths[1]["totals"]["calls"] + truths[2]["totals"]["calls"],
        }
        by_job = prometheus.query('sum by (job, pid) (dspy_lm_calls_total{host="beta"})')
        assert by_job == {
            (("job", "serve_job.py"), ("pid", str(job.pid))): truth["totals"]["calls"]
            for job, truth in zip(jobs[1:], truths[1:])
        }
        modules = prometheus.query('sum by (module) (dspy_lm_calls_total{host="alpha"})')
        assert {dict(key)["module"] for key in modules} >= {"Pipeline.draft", "Pipeline.check.predict"}
        assert prometheus.scalar('max(dspy_optimizer_trials_total{host="beta"})') >= 3
        best = prometheus.scalar(
            'max(dspy_optimizer_best_score{host="beta",optimizer="BootstrapFewShotWithRandomSearch"})'
        )
        assert best is not None and 0 <= best <= 100
        score = prometheus.scalar('max(dspy_evaluate_score{host="alpha"})')
        assert score is not None and 0 <= score <= 100
        assert prometheus.query("dspy_job_up == 1").keys() == prometheus.query("dspy_job_up").keys()

        # Every query of the Grafana dashboard in docs/ runs, and the headline panels have data.
        dashboard = json.loads((Path(__file__).parents[1] / "docs" / "grafana-dashboard.json").read_text())
        wait_for(
            lambda: len(prometheus.query("count_over_time(dspy_job_up[1m]) >= 2")) == 3,
            30,
            "two scrapes of every job (a rate needs two samples)",
        )
        panels = {}
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                expr = target["expr"].replace("$__rate_interval", "1m").replace("$host", ".*").replace("$job", ".*")
                panels.setdefault(panel["title"], []).append(prometheus.query(expr))
        assert {dict(key)["job"] for key in panels["Cost per hour by job"][0]} == {"serve_job.py"}
        assert list(panels["Tokens per second by model"][0]) == [(("model", "openai/gpt-4o-mini"),)]
        assert panels["p95 LM call latency by job"][0] and panels["Optimizer best score over time"][0]

        jobs[2].finish()
        wait_for(lambda: prometheus.scalar(f'dspy_job_up{{pid="{jobs[2].pid}"}}') == 0, 30, "the ended job down")
        assert prometheus.scalar("sum(dspy_lm_calls_total)") == calls  # its series stay a while
        beta.expect(rf"job {jobs[2].pid} \(serve_job.py\) ended")
        alpha.expect(rf"job {jobs[0].pid} \(serve_job.py\) seen")
    finally:
        for job in jobs:
            job.kill()
        if prometheus is not None:
            prometheus.stop()
        alpha.stop()
        beta.stop()


# --- OpenTelemetry ---------------------------------------------------------------------------------


class MlflowServer:
    """MLflow's tracking server on a SQLite store: OTLP/HTTP traces at /v1/traces (MLflow 3.6+)."""

    def __init__(self, home: Path) -> None:
        binary = shutil.which("mlflow", path=os.path.dirname(os.sys.executable)) or shutil.which("mlflow")
        if binary is None:
            pytest.skip("MLflow is not installed (pip install 'mlflow>=3.6': the test extra has it)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(home / "mlflow.log", "w")
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false"}
        self.proc = subprocess.Popen(
            [
                binary,
                "server",
                "--backend-store-uri",
                f"sqlite:///{home / 'mlflow.db'}",
                "--default-artifact-root",
                str(home / "artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=home,
            start_new_session=True,
        )
        self.home = home
        wait_for(self._ready, 180, "MLflow's server to start", every=0.5)

    def _ready(self) -> bool:
        return _answers(self.proc, f"{self.url}/health", self.home / "mlflow.log")

    def experiment(self, name: str) -> str:
        request = urllib.request.Request(
            f"{self.url}/api/2.0/mlflow/experiments/create",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.load(answer)["experiment_id"]

    def traces(self, experiment: str) -> list:
        from mlflow import MlflowClient

        return list(MlflowClient(tracking_uri=self.url).search_traces(locations=[experiment], max_results=500))

    def spans(self, experiment: str) -> list:
        return [span for trace in self.traces(experiment) for span in trace.data.spans]

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, 15)  # the server and its workers: its own session, started here
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait(10)
        self.log.close()


class MetricsReceiver:
    """An OTLP/HTTP metrics endpoint decoding each export with opentelemetry-proto's ExportMetricsServiceRequest."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

        received = self.requests = []

        def take(path: str, body: bytes) -> None:
            request = ExportMetricsServiceRequest()
            request.ParseFromString(body)
            received.append((path, request))

        self.receiver = OtlpReceiver(take)
        self.url = f"{self.receiver.url}/v1/metrics"

    def latest(self) -> dict[str, object]:
        """The newest export's metrics by name (cumulative: the newest holds everything)."""
        if not self.requests:
            return {}
        _, request = self.requests[-1]
        return {
            metric.name: metric
            for resource in request.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    def resource(self) -> dict[str, str]:
        _, request = self.requests[-1]
        return {a.key: a.value.string_value for a in request.resource_metrics[0].resource.attributes}

    def stop(self) -> None:
        self.receiver.close()


def _attributes(point) -> dict:
    out = {}
    for attribute in point.attributes:
        value = attribute.value
        out[attribute.key] = value.string_value or value.int_value or value.bool_value
    return out


def test_otlp_spans_reach_mlflow_and_metrics_follow_the_genai_conventions(sim, tmp_path):
    runtime = _runtime(tmp_path, "o")
    mlflow = MlflowServer(tmp_path)
    receiver = MetricsReceiver()
    serve = job = None
    try:
        experiment = mlflow.experiment("dspy-top serve")
        serve = Serve(
            runtime,
            "--otlp",
            "--hostname",
            "otlp-box",
            env={
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"{mlflow.url}/v1/traces",
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS": f"x-mlflow-experiment-id={experiment}",
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": receiver.url,
                "OTEL_METRIC_EXPORT_INTERVAL": "500",
                "OTEL_BSP_SCHEDULE_DELAY": "200",
            },
        )
        serve.expect("watching the jobs")
        job = ServeJob(runtime, sim.base_url, "3", "--evaluate", "5", "--optimize")
        truth = job.truth()
        server = sim.stats()
        calls = truth["totals"]["calls"]
        assert calls == server["requests"] > 3 * 2 + 5

        def chat_spans():
            spans = mlflow.spans(experiment)
            chats = [s for s in spans if s.name.startswith("chat ")]
            ended = any(s.name.startswith("optimize ") for s in spans)
            return spans if len(chats) == calls and ended else None

        spans = wait_for(chat_spans, 90, "every call's span in MLflow", every=1.0)
        traces = mlflow.traces(experiment)
        for trace in traces:  # the job is the spans' resource: MLflow keeps it as the trace's tags
            tags = trace.info.tags
            assert (tags["dspy.job"], tags["process.pid"], tags["host.name"], tags["service.name"]) == (
                "serve_job.py",
                str(job.pid),
                "otlp-box",
                "dspy-top",
            )
        # MLflow reads the GenAI attributes itself: its own token count per trace adds up to the LM server's.
        usage = [json.loads(t.info.trace_metadata["mlflow.trace.tokenUsage"]) for t in traces]
        assert sum(u["input_tokens"] for u in usage) == server["prompt_tokens"]
        assert sum(u["output_tokens"] for u in usage) == server["completion_tokens"]
        chats = [s for s in spans if s.name.startswith("chat ")]
        assert {s.name for s in chats} == {"chat gpt-4o-mini"}
        for span in chats:
            attributes = span.attributes
            assert attributes["gen_ai.operation.name"] == "chat"
            assert attributes["gen_ai.provider.name"] == "openai"
            assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
            assert attributes["dspy.cache_hit"] is False and attributes["dspy.cost_usd"] > 0
        assert sum(s.attributes["gen_ai.usage.input_tokens"] for s in chats) == server["prompt_tokens"]
        assert sum(s.attributes["gen_ai.usage.output_tokens"] for s in chats) == server["completion_tokens"]
        evaluation = next(s for s in spans if s.name.startswith("evaluate ") and s.parent_id is None)
        assert evaluation.attributes["dspy.evaluate.examples"] == 5
        inside = [s for s in chats if s.parent_id == evaluation.span_id]
        assert len(inside) == 5 and all(s.trace_id == evaluation.trace_id for s in inside)
        modules = {s.attributes["dspy.module"] for s in chats if s.parent_id is None}
        assert modules == {"Pipeline.draft", "Pipeline.check.predict"}
        # The optimizer run is the parent of its trials (evaluations), each the parent of its calls.
        optimizer = next(s for s in spans if s.name == "optimize BootstrapFewShotWithRandomSearch")
        trials = [s for s in spans if s.parent_id == optimizer.span_id and s.name.startswith("evaluate ")]
        assert len(trials) >= 3 and all("dspy.optimizer.trial" in s.attributes for s in trials)
        assert all(s.trace_id == optimizer.trace_id for s in trials)
        trial_ids = {s.span_id for s in trials}
        in_trials = [s for s in chats if s.parent_id in trial_ids]
        assert in_trials and all(s.trace_id == optimizer.trace_id for s in in_trials)
        in_run = [s for s in chats if s.trace_id == optimizer.trace_id]
        assert len(in_run) == optimizer.attributes["dspy.lm.calls"]  # trials and bootstrapping, every call

        def metrics_in():
            latest = receiver.latest()
            counted = latest.get("dspy.lm.calls")
            if counted is None or sum(p.as_int or p.as_double for p in counted.sum.data_points) != calls:
                return None
            return latest

        latest = wait_for(metrics_in, 60, "the exact call count over OTLP")
        usage = latest["gen_ai.client.token.usage"]
        duration = latest["gen_ai.client.operation.duration"]
        assert usage.unit == "{token}" and duration.unit == "s"
        assert list(usage.histogram.data_points[0].explicit_bounds) == list(TOKEN_BUCKETS)
        assert list(duration.histogram.data_points[0].explicit_bounds) == list(DURATION_BUCKETS)
        by_type = {}
        for point in usage.histogram.data_points:
            attributes = _attributes(point)
            assert attributes["gen_ai.operation.name"] == "chat" and attributes["gen_ai.request.model"] == "gpt-4o-mini"
            by_type[attributes["gen_ai.token.type"]] = by_type.get(attributes["gen_ai.token.type"], 0) + point.sum
        assert by_type == {"input": server["prompt_tokens"], "output": server["completion_tokens"]}
        assert sum(point.count for point in duration.histogram.data_points) == calls
        tokens = {}
        for point in latest["dspy.lm.model.tokens"].sum.data_points:
            kind = _attributes(point)["gen_ai.token.type"]
            tokens[kind] = tokens.get(kind, 0) + point.as_int
        assert tokens["input"] == server["prompt_tokens"] and tokens["output"] == server["completion_tokens"]
        assert latest["dspy.lm.calls"].sum.is_monotonic
        assert {"dspy.job.up", "dspy.lm.cost_usd", "dspy.evaluate.score", "dspy.serve.spans.dropped"} <= set(latest)
        assert receiver.resource()["host.name"] == "otlp-box"
        assert receiver.resource()["service.name"] == "dspy-top"
    finally:
        if job is not None:
            job.kill()
        if serve is not None:
            serve.stop()
        receiver.stop()
        mlflow.stop()


class VictoriaMetrics:
    """Debian 13's VictoriaMetrics (unpacked by .ci/victoria-metrics): OTLP/HTTP metrics in, PromQL out."""

    def __init__(self, home: Path) -> None:
        binary = Path(__file__).parents[1] / ".ci" / "engines" / "victoria-metrics" / "usr" / "bin" / "victoria-metrics"
        if not binary.exists():
            pytest.skip(
                "VictoriaMetrics 1.92+ is not unpacked: run .ci/victoria-metrics (Debian 13's package; .ci/run does)"
            )
        self.port = free_port()
        self.log = open(home / "victoria-metrics.log", "w")
        self.proc = subprocess.Popen(
            [
                str(binary),
                f"-storageDataPath={home / 'vm-data'}",
                f"-httpListenAddr=127.0.0.1:{self.port}",
                "-search.latencyOffset=0s",
                "-search.disableCache",
                "-loggerLevel=WARN",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.home = home
        self.otlp_url = f"http://127.0.0.1:{self.port}/opentelemetry/v1/metrics"
        wait_for(
            lambda: _answers(self.proc, f"http://127.0.0.1:{self.port}/health", home / "victoria-metrics.log"),
            60,
            "VictoriaMetrics to be ready",
        )

    query = Prometheus.query
    scalar = Prometheus.scalar
    stop = Prometheus.stop


def _series(engine: VictoriaMetrics, name: str) -> list[tuple[dict, float]]:
    """Every series of one metric name (OpenTelemetry's own, dots and all), with its labels and value."""
    return [(dict(key), value) for key, value in engine.query(f'{{__name__="{name}"}}').items()]


def _sum_by(series: list[tuple[dict, float]], label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, value in series:
        out[labels[label]] = out.get(labels[label], 0) + value
    return out


def test_otlp_metrics_reach_victoria_metrics_with_exact_values(sim, tmp_path):
    runtime = _runtime(tmp_path, "v")
    engine = VictoriaMetrics(tmp_path)
    serve = job = None
    try:
        serve = Serve(
            runtime,
            "--otlp",
            "--hostname",
            "otlp-box",
            env={
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": engine.otlp_url,
                "OTEL_TRACES_EXPORTER": "none",
                "OTEL_METRIC_EXPORT_INTERVAL": "500",
                "OTEL_SERVICE_NAME": "dspy-fleet",
                "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=ci",
            },
        )
        serve.expect("pushing OTLP metrics to " + engine.otlp_url)
        job = ServeJob(runtime, sim.base_url, "3", "--evaluate", "5", "--optimize")
        truth = job.truth()
        server = sim.stats()
        totals = truth["totals"]
        calls = totals["calls"]
        assert calls == server["requests"] == server["ok"] > 3 * 2 + 5  # no cache, no errors: a request per call

        def exact():
            return all(
                sum(value for _, value in _series(engine, name)) == calls
                for name in ("dspy.lm.calls", "dspy.lm.model.calls", "gen_ai.client.operation.duration_count")
            )

        wait_for(exact, 60, "VictoriaMetrics to hold every call", every=0.5)
        # The GenAI conventions' histograms, per call: token sums by type equal the LM server's counts.
        usage = _series(engine, "gen_ai.client.token.usage_sum")
        assert _sum_by(usage, "gen_ai.token.type") == {
            "input": server["prompt_tokens"],
            "output": server["completion_tokens"],
        }
        assert _sum_by(_series(engine, "gen_ai.client.token.usage_count"), "gen_ai.token.type") == {
            "input": calls,
            "output": calls,
        }
        for labels, _ in usage:
            assert (
                labels["gen_ai.operation.name"],
                labels["gen_ai.provider.name"],
                labels["gen_ai.request.model"],
                labels["dspy.job"],
            ) == ("chat", "openai", "gpt-4o-mini", "serve_job.py")
            assert (labels["host.name"], labels["service.name"], labels["deployment.environment"]) == (
                "otlp-box",
                "dspy-fleet",
                "ci",
            )  # the resource, with the standard variables
        bounds = {
            name: {labels["le"] for labels, _ in _series(engine, f"{name}_bucket")}
            for name in ("gen_ai.client.token.usage", "gen_ai.client.operation.duration")
        }
        assert bounds["gen_ai.client.token.usage"] == {"+Inf", *(str(b) for b in TOKEN_BUCKETS)}
        assert {float(b) for b in bounds["gen_ai.client.operation.duration"]} == {float("inf"), *DURATION_BUCKETS}
        inf = {
            labels["gen_ai.token.type"]: value
            for labels, value in _series(engine, "gen_ai.client.token.usage_bucket")
            if labels["le"] == "+Inf"
        }
        assert inf == {"input": calls, "output": calls}
        # The dspy.* figures: the job's exact totals, by module and by model.
        tokens = _sum_by(_series(engine, "dspy.lm.model.tokens"), "gen_ai.token.type")
        assert (tokens["input"], tokens["output"]) == (server["prompt_tokens"], server["completion_tokens"])
        assert _sum_by(_series(engine, "dspy.lm.tokens"), "gen_ai.token.type") == tokens
        assert {labels["dspy.module"] for labels, _ in _series(engine, "dspy.lm.calls")} >= {
            "Pipeline.draft",
            "Pipeline.check.predict",
        }
        assert _sum_by(_series(engine, "dspy.lm.model.calls"), "dspy.lm.model") == {"openai/gpt-4o-mini": calls}
        cost = sum(value for _, value in _series(engine, "dspy.lm.cost_usd"))
        assert cost == pytest.approx(totals["cost_usd"], rel=1e-9) and cost > 0
        for name, key in (
            ("unmetered_calls", "unmetered_calls"),
            ("unpriced_calls", "unpriced_calls"),
            ("errors", "errors"),
            ("cache_hits", "cache_hits"),
            ("retries", "retries"),
        ):
            series = _series(engine, f"dspy.lm.{name}")
            assert series and sum(value for _, value in series) == totals[key] == 0, name
        assert [(labels["process.pid"], value) for labels, value in _series(engine, "dspy.job.up")] == [
            (str(job.pid), 1)
        ]
        search = "BootstrapFewShotWithRandomSearch"  # its candidates' BootstrapFewShot runs are runs too
        (trials,) = [v for labels, v in _series(engine, "dspy.optimizer.trials") if labels["dspy.optimizer"] == search]
        (best,) = [
            v for labels, v in _series(engine, "dspy.optimizer.best_score") if labels["dspy.optimizer"] == search
        ]
        (score,) = [value for _, value in _series(engine, "dspy.evaluate.score")]
        assert trials >= 3 and 0 <= best <= 100 and 0 <= score <= 100
    finally:
        if job is not None:
            job.kill()
        if serve is not None:
            serve.stop()
        engine.stop()
