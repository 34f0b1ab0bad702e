"""The agent's loop: every tick, log what changed, turn new calls and ended scopes into spans and GenAI
metrics, and let jobs that ended long enough ago go (their series with them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from dspy_top.serve.journal import Journal
from dspy_top.serve.watch import FAILED, JobView, JobWatch

if TYPE_CHECKING:  # the OpenTelemetry parts are optional (`pip install "dspy-top[serve]"`)
    from dspy_top.serve.otlp_export import SpanQueue
    from dspy_top.serve.otlp_metrics import OtlpMetrics
    from dspy_top.serve.otlp_spans import SpanBuilder
    from dspy_top.serve.prometheus import Exposition

TICK = 0.25  # seconds between looks at the jobs


class Agent:
    """Drives the exporters that need a push (OTLP) and the jobs' retention; Prometheus reads on its own."""

    def __init__(
        self,
        watch: JobWatch,
        log: Callable[[str], None],
        *,
        keep_ended: float = 300.0,
        spans: SpanBuilder | None = None,
        queue: SpanQueue | None = None,
        metrics: OtlpMetrics | None = None,
        exposition: Exposition | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.watch = watch
        self.log = log
        self.keep_ended = keep_ended
        self.spans = spans
        self.queue = queue
        self.metrics = metrics
        self.exposition = exposition
        self.clock = clock
        self.journal = Journal(log)
        self._failed_since: dict[str, float] = {}
        self._names: dict[str, str] = {}  # job key -> job name, for the calls of jobs already let go
        self.stopping = threading.Event()
        self.calls_dropped = 0

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception as exc:  # the agent's own fault: say so, keep serving
                self.log(f"internal error, carrying on: {type(exc).__name__}: {exc}")
            self.stopping.wait(TICK)
        try:
            self.tick()  # the last calls and scopes before the exporters flush
        except Exception:
            pass

    def tick(self) -> None:
        now = self.clock()
        version = self.watch.version
        jobs = self.watch.jobs()
        if self.exposition is not None:  # before the journal: a scrape after its line sees what it says
            self.exposition.prepare(jobs, version)
        self.journal.update(jobs)
        for job in jobs:
            self._names[job.key] = job.job
        if self.spans is not None and self.queue is not None:
            for job in jobs:
                if job.attached:
                    spans = self.spans.scopes(job, now)
                    if spans:
                        self.queue.offer(spans)
        calls, dropped = self.watch.take_calls()
        self.calls_dropped = dropped
        if calls:
            if self.spans is not None and self.queue is not None:
                spans = [span for span in map(self.spans.call, calls) if span is not None]
                self.queue.offer(spans)
            if self.metrics is not None:
                names = self._names
                for call in calls:
                    self.metrics.record(call, names.get(call.process, ""))
        self._let_go(jobs, now)

    def _let_go(self, jobs: list[JobView], now: float) -> None:
        """Ended jobs stay `keep_ended` seconds (a last scrape sees their final numbers), then go."""
        for job in jobs:
            if job.state == FAILED:
                since = self._failed_since.setdefault(job.key, now)
                if now - since < self.keep_ended:
                    continue
            elif not (job.over and job.ended_at is not None and now - job.ended_at >= self.keep_ended):
                continue
            self._failed_since.pop(job.key, None)
            self.journal.forget(job)
            self._names.pop(job.key, None)
            if self.spans is not None:
                self.spans.forget(job.key)
            self.watch.forget(job.key)
