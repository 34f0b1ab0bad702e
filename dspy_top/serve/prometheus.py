"""`/metrics` for Prometheus: a custom `prometheus_client` collector reading every job's exact totals at scrape time.

Nothing is counted here: each scrape reads what the jobs' last `stats` frames said, so a counter is
exactly the job's own (docs/serve.md lists every metric).
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from dspy_top.model.counters import Counters
from dspy_top.serve.figures import COUNTERS, LATENCY_BOUNDS, TOKENS, cumulative_buckets, runs
from dspy_top.serve.labels import bounded
from dspy_top.serve.watch import JobView

JOB = ["host", "pid", "job"]
_BOUNDS = [f"{bound:g}" for bound in LATENCY_BOUNDS]


class JobsCollector(Collector):
    """Every attached job's figures, labelled `host`, `pid`, `job` and `module` (or `model`)."""

    def __init__(self, jobs: Callable[[], Iterable[JobView]], *, host: str, max_modules: int = 50,
                 max_models: int = 20, max_runs: int = 20, clock: Callable[[], float] = time.time) -> None:
        self.jobs = jobs
        self.host = host
        self.max_modules = max_modules
        self.max_models = max_models
        self.max_runs = max_runs
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []  # no names to reserve: nothing else is registered beside this collector

    def collect(self) -> Iterator[Metric]:
        now = self.clock()
        by_module = _Families("dspy_lm_", "module", "")
        by_model = _Families("dspy_lm_model_", "model", " (by model)")
        up = GaugeMetricFamily("dspy_job_up", "1 while the job runs, 0 once it ended (its series stay a while)", labels=JOB)
        started = GaugeMetricFamily("dspy_job_start_time_seconds", "when the job started (epoch seconds)", labels=JOB)
        dropped = CounterMetricFamily("dspy_job_dropped_events", "call events this agent did not receive (the "
                                      "counters stay exact; only per-call spans are missing)", labels=JOB)
        budget = GaugeMetricFamily("dspy_job_budget_usd", "the job's budget guard: its limit per scope "
                                   "(total, module or model)", labels=[*JOB, "scope", "name"])
        trials = CounterMetricFamily("dspy_optimizer_trials", "evaluations (trials) an optimizer run finished",
                                     labels=[*JOB, "optimizer", "run"])
        best = GaugeMetricFamily("dspy_optimizer_best_score", "an optimizer run's best full-evaluation score "
                                 "(percent)", labels=[*JOB, "optimizer", "run"])
        score = GaugeMetricFamily("dspy_evaluate_score", "a dspy.Evaluate outside any optimizer: its score so far, "
                                  "then its final score (percent)", labels=[*JOB, "evaluation", "program"])
        for job in self.jobs():
            if not job.attached or job.state == "failed":
                continue
            base = [self.host, str(job.pid), job.job]
            for module, counters in bounded(job.modules, self.max_modules):
                by_module.add(base, module, counters)
            for model, counters in bounded(job.models, self.max_models):
                by_model.add(base, model, counters)
            up.add_metric(base, 1.0 if job.up else 0.0)
            if job.started_at:
                started.add_metric(base, job.started_at)
            dropped.add_metric(base, job.dropped)
            for limit in job.budget_limits:
                budget.add_metric([*base, limit.scope, limit.name], limit.usd)
            for run in runs(job, now, self.max_runs):
                if run.evaluation:
                    if run.score is not None:
                        score.add_metric([*base, run.id, run.label], run.score)
                    continue
                trials.add_metric([*base, run.optimizer, run.id], run.trials)
                if run.best_score is not None:
                    best.add_metric([*base, run.optimizer, run.id], run.best_score)
        yield from by_module.families()
        yield from by_model.families()
        yield from (up, started, dropped, budget, trials, best, score)


class _Families:
    """The counter families of one dimension (module or model), filled job by job."""

    def __init__(self, prefix: str, label: str, suffix: str) -> None:
        labels = [*JOB, label]
        self.counters = [(figure, CounterMetricFamily(prefix + figure.name, figure.help + suffix, labels=labels))
                         for figure in COUNTERS]
        self.tokens = CounterMetricFamily(prefix + "tokens", "billed tokens by type: input, output, and the "
                                          "cached (part of input) and reasoning (part of output) ones" + suffix,
                                          labels=[*labels, "type"])
        self.in_flight = GaugeMetricFamily(prefix + "in_flight", "calls started and not finished" + suffix,
                                           labels=labels)
        self.duration = HistogramMetricFamily(prefix + "call_duration_seconds", "wall time of finished calls "
                                              "(retries and DSPy's cache lookup included)" + suffix, labels=labels)

    def add(self, base: list[str], name: str, counters: Counters) -> None:
        labels = [*base, name]
        for figure, family in self.counters:
            family.add_metric(labels, figure.value(counters))
        for kind, value in TOKENS:
            self.tokens.add_metric([*labels, kind], value(counters))
        self.in_flight.add_metric(labels, counters.in_flight)
        counts, count = cumulative_buckets(counters.latency_hist)
        self.duration.add_metric(labels, [*zip(_BOUNDS, counts), ("+Inf", count)], counters.latency_s)

    def families(self) -> Iterator[Metric]:
        yield from (family for _, family in self.counters)
        yield from (self.tokens, self.in_flight, self.duration)


def serve_metrics(collector: JobsCollector, host: str, port: int) -> tuple[object, int]:
    """Serve `/metrics` from a daemon thread; returns the server (`shutdown()` stops it) and its port.

    Raises OSError when the address cannot be bound (a port in use, an address not on this machine).
    """
    from prometheus_client import start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server, server.server_port
