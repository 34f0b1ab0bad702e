"""OTLP metrics: the GenAI semantic conventions' client histograms, fed per call, and the dspy.* figures,
observed from the jobs' exact totals at each export (as the Prometheus collector reads them at each scrape).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource

from dspy_top.model.calls import CallSummary
from dspy_top.serve.figures import COUNTERS, TOKENS, runs
from dspy_top.serve.labels import bounded, split_model
from dspy_top.serve.otlp_export import MetricExporter
from dspy_top.serve.watch import JobView

# The GenAI semantic conventions' advised bucket boundaries.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)


class Figures:
    """The jobs as last read, shared by every observable instrument's callback within one export."""

    def __init__(self, jobs: Callable[[], Iterable[JobView]], max_age: float = 0.5) -> None:
        self._read = jobs
        self.max_age = max_age
        self._jobs: list[JobView] = []
        self._at = 0.0

    def jobs(self) -> list[JobView]:
        now = time.monotonic()
        if now - self._at > self.max_age:
            self._jobs = [job for job in self._read() if job.attached and job.state != "failed"]
            self._at = now
        return self._jobs


class OtlpMetrics:
    """A meter provider exporting over OTLP/HTTP every OTEL_METRIC_EXPORT_INTERVAL (default 60 s)."""

    def __init__(
        self,
        exporter: MetricExporter | None,
        resource: Resource,
        jobs: Callable[[], Iterable[JobView]],
        *,
        max_modules: int = 50,
        max_models: int = 20,
        max_runs: int = 20,
        spans_dropped: Callable[[], int] = lambda: 0,
        interval_ms: float | None = None,
        reader: MetricReader | None = None,
    ) -> None:
        """`reader` replaces the periodic OTLP export (a test reads the instruments in memory)."""
        self.figures = Figures(jobs)
        self.max_modules, self.max_models, self.max_runs = max_modules, max_models, max_runs
        self.reader = reader or PeriodicExportingMetricReader(exporter, export_interval_millis=interval_ms)
        self.provider = MeterProvider(metric_readers=[self.reader], resource=resource, shutdown_on_exit=False)
        meter = self.provider.get_meter("dspy-top")
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS),
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS),
        )
        for dimension, attributes in (("", self._module), ("model.", self._model)):
            for figure in COUNTERS:
                meter.create_observable_counter(
                    f"dspy.lm.{dimension}{figure.name}",
                    unit=figure.unit,
                    description=figure.help,
                    callbacks=[self._counter(attributes, figure.value)],
                )
            meter.create_observable_counter(
                f"dspy.lm.{dimension}tokens",
                unit="{token}",
                description="billed tokens by gen_ai.token.type",
                callbacks=[self._tokens(attributes)],
            )
            meter.create_observable_up_down_counter(
                f"dspy.lm.{dimension}in_flight",
                unit="{call}",
                description="calls started and not finished",
                callbacks=[self._counter(attributes, lambda c: c.in_flight)],
            )
        meter.create_observable_gauge(
            "dspy.job.up", description="1 while the job runs, 0 once it ended", callbacks=[self._up]
        )
        meter.create_observable_gauge(
            "dspy.job.budget_usd", unit="USD", description="the job's budget limits", callbacks=[self._budget]
        )
        meter.create_observable_counter(
            "dspy.job.dropped_events",
            unit="{event}",
            description="call events this agent did not receive",
            callbacks=[self._dropped],
        )
        meter.create_observable_counter(
            "dspy.optimizer.trials",
            unit="{trial}",
            description="evaluations an optimizer run finished",
            callbacks=[self._trials],
        )
        meter.create_observable_gauge(
            "dspy.optimizer.best_score",
            unit="%",
            description="an optimizer run's best full-evaluation score",
            callbacks=[self._best],
        )
        meter.create_observable_gauge(
            "dspy.evaluate.score",
            unit="%",
            description="a dspy.Evaluate outside any optimizer: its score",
            callbacks=[self._score],
        )
        meter.create_observable_counter(
            "dspy.serve.spans.dropped",
            unit="{span}",
            description="spans this agent dropped (its export queue was full)",
            callbacks=[lambda options: [Observation(spans_dropped())]],
        )

    # --- per call ----------------------------------------------------------------------

    def record(self, call: CallSummary, job: str) -> None:
        """Feed the GenAI histograms with one call (a cache hit made no request: it is not a client operation)."""
        if call.cache_hit:
            return
        provider, model = split_model(call.model)
        attributes = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            "dspy.job": job,
        }
        if call.response_model:
            attributes["gen_ai.response.model"] = call.response_model
        if call.error:
            self.duration.record(call.latency, {**attributes, "error.type": call.error})
            return
        self.duration.record(call.latency, attributes)
        if not call.usage_known:  # DSPy did not report its tokens: unknown, not 0
            return
        self.token_usage.record(call.prompt_tokens, {**attributes, "gen_ai.token.type": "input"})
        self.token_usage.record(call.completion_tokens, {**attributes, "gen_ai.token.type": "output"})

    # --- observed at export ----------------------------------------------------------------

    @staticmethod
    def _job_attributes(job: JobView) -> dict:
        return {"process.pid": job.pid, "dspy.job": job.job}

    def _module(self, job: JobView):
        base = self._job_attributes(job)
        return (({**base, "dspy.module": name}, counters) for name, counters in bounded(job.modules, self.max_modules))

    def _model(self, job: JobView):
        base = self._job_attributes(job)
        for name, counters in bounded(job.models, self.max_models):
            provider, model = split_model(name)
            yield (
                {**base, "dspy.lm.model": name, "gen_ai.provider.name": provider, "gen_ai.request.model": model},
                counters,
            )

    def _counter(self, attributes, value):
        def observe(options: CallbackOptions) -> list[Observation]:
            return [
                Observation(value(counters), labels)
                for job in self.figures.jobs()
                for labels, counters in attributes(job)
            ]

        return observe

    def _tokens(self, attributes):
        def observe(options: CallbackOptions) -> list[Observation]:
            return [
                Observation(value(counters), {**labels, "gen_ai.token.type": kind})
                for job in self.figures.jobs()
                for labels, counters in attributes(job)
                for kind, value in TOKENS
            ]

        return observe

    def _up(self, options: CallbackOptions) -> list[Observation]:
        return [Observation(1 if job.up else 0, self._job_attributes(job)) for job in self.figures.jobs()]

    def _dropped(self, options: CallbackOptions) -> list[Observation]:
        return [Observation(job.dropped, self._job_attributes(job)) for job in self.figures.jobs()]

    def _budget(self, options: CallbackOptions) -> list[Observation]:
        return [
            Observation(
                limit.usd,
                {**self._job_attributes(job), "dspy.budget.scope": limit.scope, "dspy.budget.name": limit.name},
            )
            for job in self.figures.jobs()
            for limit in job.budget_limits
        ]

    def _runs(self, evaluation: bool):
        now = time.time()
        for job in self.figures.jobs():
            for run in runs(job, now, self.max_runs):
                if run.evaluation == evaluation:
                    yield job, run

    def _trials(self, options: CallbackOptions) -> list[Observation]:
        return [
            Observation(
                run.trials, {**self._job_attributes(job), "dspy.optimizer": run.optimizer, "dspy.optimizer.run": run.id}
            )
            for job, run in self._runs(False)
        ]

    def _best(self, options: CallbackOptions) -> list[Observation]:
        return [
            Observation(
                run.best_score,
                {**self._job_attributes(job), "dspy.optimizer": run.optimizer, "dspy.optimizer.run": run.id},
            )
            for job, run in self._runs(False)
            if run.best_score is not None
        ]

    def _score(self, options: CallbackOptions) -> list[Observation]:
        return [
            Observation(
                run.score,
                {**self._job_attributes(job), "dspy.evaluate.run": run.id, "dspy.evaluate.program": run.label},
            )
            for job, run in self._runs(True)
            if run.score is not None
        ]

    def shutdown(self, timeout_millis: float = 5_000) -> None:
        self.provider.shutdown(timeout_millis=timeout_millis)
