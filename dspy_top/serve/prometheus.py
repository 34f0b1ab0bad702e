"""`/metrics` for Prometheus: every job's exact totals, written in the text format ahead of the scrapes.

Nothing is counted here: each rendering reads what the jobs' last `stats` frames said, so a counter is
exactly the job's own (docs/serve.md lists every metric). The text exposition format (0.0.4) is
written directly, each label set once per module: 20 jobs x 50 modules are about 30,000 samples,
which prometheus_client's generic exposition renders in 300 ms and this in about 11.

Once scrapes come, the agent's loop renders the text whenever the jobs changed (at most once a second,
at once when a job starts or ends) and a scrape answers the text last rendered: it never waits for the
rendering, nor for the collector folding the jobs' frames (benchmarks/README.md, "dspy-top serve").
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dspy_top.model.counters import Counters
from dspy_top.serve.figures import COUNTERS, LATENCY_BOUNDS, TOKENS, cumulative_buckets, runs
from dspy_top.serve.labels import bounded
from dspy_top.serve.watch import JobView

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_BOUNDS = [repr(bound) for bound in LATENCY_BOUNDS]  # in full: each is a sketch bucket's exact edge


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if type(value) is int:
        return str(value)
    if math.isfinite(value):
        return repr(value)
    return "NaN" if math.isnan(value) else ("+Inf" if value > 0 else "-Inf")


@dataclass(frozen=True)
class Rendered:
    """The text of one rendering, and what it was rendered from."""

    body: bytes
    version: int  # the collector's version of the jobs it read
    states: tuple  # each job's key, state and attachment: a change is rendered at once
    at: float  # monotonic: when it was rendered, or last found still current


class Exposition:
    """Every attached job's figures, labelled `host`, `pid`, `job` and `module` (or `model`)."""

    def __init__(
        self,
        jobs: Callable[[], Iterable[JobView]],
        *,
        host: str,
        max_modules: int = 50,
        max_models: int = 20,
        max_runs: int = 20,
        clock: Callable[[], float] = time.time,
        every: float = 1.0,
        idle_after: float = 600.0,
    ) -> None:
        self.jobs = jobs
        self.host = _label(host)
        self.max_modules = max_modules
        self.max_models = max_models
        self.max_runs = max_runs
        self.clock = clock
        self.every = every  # seconds between renderings while the jobs change
        self.idle_after = idle_after  # no scrape for this long: stop rendering ahead
        self.rendered: Rendered | None = None  # replaced whole: the HTTP threads read it without a lock
        self.scraped_at = -math.inf

    def prepare(self, jobs: Sequence[JobView], version: int) -> None:
        """Render ahead of the next scrape (the agent's loop, each tick), when the jobs changed since the last.

        `version` is the collector's, read before `jobs`. Nothing is rendered while no one scrapes.
        """
        now = time.monotonic()
        if now - self.scraped_at > self.idle_after:
            self.rendered = None
            return
        states = tuple((job.key, job.state, job.attached) for job in jobs)
        last = self.rendered
        if last is not None and (last.version == version or (last.states == states and now - last.at < self.every)):
            if last.version == version:
                self.rendered = Rendered(last.body, version, states, now)  # still current
            return
        self.rendered = Rendered(self.render(jobs).encode("utf-8"), version, states, now)

    def body(self) -> bytes:
        """A scrape's answer: the text rendered ahead, or, when none is recent (the first scrape, or
        the agent's loop is not preparing), the text rendered now."""
        now = time.monotonic()
        self.scraped_at = now
        last = self.rendered
        if last is not None and now - last.at <= self.every + 1.0:
            return last.body
        return self.render().encode("utf-8")

    def render(self, jobs: Iterable[JobView] | None = None) -> str:
        now = self.clock()
        jobs = [job for job in (self.jobs() if jobs is None else jobs) if job.attached and job.state != "failed"]
        modules: list[tuple[str, Counters]] = []
        models: list[tuple[str, Counters]] = []
        bases: list[tuple[str, JobView]] = []
        for job in jobs:
            base = f'host="{self.host}",pid="{job.pid}",job="{_label(job.job)}"'
            bases.append((base, job))
            modules.extend((f'{base},module="{_label(name)}"', c) for name, c in bounded(job.modules, self.max_modules))
            models.extend((f'{base},model="{_label(name)}"', c) for name, c in bounded(job.models, self.max_models))
        out: list[str] = []
        _counters(out, "dspy_lm_", "", modules)
        _counters(out, "dspy_lm_model_", " (by model)", models)
        _job_figures(out, bases, now, self.max_runs)
        return "".join(out)


def _family(out: list[str], name: str, kind: str, help: str) -> None:
    out.append(f"# HELP {name} {help}\n# TYPE {name} {kind}\n")


def _counters(out: list[str], prefix: str, suffix: str, rows: list[tuple[str, Counters]]) -> None:
    """The counter families of one dimension (module or model)."""
    for figure in COUNTERS:
        name = f"{prefix}{figure.name}_total"
        _family(out, name, "counter", figure.help + suffix)
        value = figure.value
        out.extend([f"{name}{{{labels}}} {_number(value(c))}\n" for labels, c in rows])
    name = f"{prefix}tokens_total"
    _family(
        out,
        name,
        "counter",
        "billed tokens by type: input, output, and the cached (part of input) and "
        "reasoning (part of output) ones" + suffix,
    )
    for kind, value in TOKENS:
        out.extend([f'{name}{{{labels},type="{kind}"}} {value(c)}\n' for labels, c in rows])
    name = f"{prefix}in_flight"
    _family(out, name, "gauge", "calls started and not finished" + suffix)
    out.extend([f"{name}{{{labels}}} {c.in_flight}\n" for labels, c in rows])
    name = f"{prefix}call_duration_seconds"
    _family(out, name, "histogram", "wall time of finished calls (retries and DSPy's cache lookup included)" + suffix)
    for labels, c in rows:
        counts, count = cumulative_buckets(c.latency_hist)
        out.extend([f'{name}_bucket{{{labels},le="{bound}"}} {n}\n' for bound, n in zip(_BOUNDS, counts)])
        out.append(
            f'{name}_bucket{{{labels},le="+Inf"}} {count}\n{name}_sum{{{labels}}} {_number(c.latency_s)}\n'
            f"{name}_count{{{labels}}} {count}\n"
        )


def _job_figures(out: list[str], bases: list[tuple[str, JobView]], now: float, max_runs: int) -> None:
    _family(out, "dspy_job_up", "gauge", "1 while the job runs, 0 once it ended (its series stay a while)")
    out.extend([f"dspy_job_up{{{base}}} {1 if job.up else 0}\n" for base, job in bases])
    _family(out, "dspy_job_start_time_seconds", "gauge", "when the job started (epoch seconds)")
    out.extend(
        [f"dspy_job_start_time_seconds{{{base}}} {_number(job.started_at)}\n" for base, job in bases if job.started_at]
    )
    _family(
        out,
        "dspy_job_dropped_events_total",
        "counter",
        "call events this agent did not receive (the counters stay exact; only per-call spans are missing)",
    )
    out.extend([f"dspy_job_dropped_events_total{{{base}}} {job.dropped}\n" for base, job in bases])
    _family(out, "dspy_job_budget_usd", "gauge", "the job's budget guard: its limit per scope (total, module or model)")
    out.extend(
        [
            f'dspy_job_budget_usd{{{base},scope="{_label(limit.scope)}",name="{_label(limit.name)}"}} '
            f"{_number(limit.usd)}\n"
            for base, job in bases
            for limit in job.budget_limits
        ]
    )
    trials, best, scores = [], [], []
    for base, job in bases:
        for run in runs(job, now, max_runs):
            if run.evaluation:
                if run.score is not None:
                    labels = f'{base},evaluation="{_label(run.id)}",program="{_label(run.label)}"'
                    scores.append(f"dspy_evaluate_score{{{labels}}} {_number(run.score)}\n")
                continue
            labels = f'{base},optimizer="{_label(run.optimizer)}",run="{_label(run.id)}"'
            trials.append(f"dspy_optimizer_trials_total{{{labels}}} {run.trials}\n")
            if run.best_score is not None:
                best.append(f"dspy_optimizer_best_score{{{labels}}} {_number(run.best_score)}\n")
    _family(out, "dspy_optimizer_trials_total", "counter", "evaluations (trials) an optimizer run finished")
    out.extend(trials)
    _family(out, "dspy_optimizer_best_score", "gauge", "an optimizer run's best full-evaluation score (percent)")
    out.extend(best)
    _family(
        out,
        "dspy_evaluate_score",
        "gauge",
        "a dspy.Evaluate outside any optimizer: its score so far, then its final score (percent)",
    )
    out.extend(scores)


class _Handler(BaseHTTPRequestHandler):
    exposition: Exposition  # set on the server's own subclass

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path.split("?", 1)[0] not in ("/metrics", "/"):
            self._answer(404, "text/plain; charset=utf-8", b"dspy-top serve: metrics are at /metrics\n")
            return
        try:
            body = self.server.exposition.body()  # type: ignore[attr-defined]
        except Exception as exc:  # the agent's own fault: say so, never a hang
            self._answer(500, "text/plain; charset=utf-8", f"dspy-top serve: {type(exc).__name__}: {exc}\n".encode())
            return
        self._answer(200, CONTENT_TYPE, body)

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, format: str, *args) -> None:
        pass  # one line per scrape would drown the jobs' lines


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # a restarted agent binds at once; a port in use still fails

    def __init__(self, address: tuple[str, int], exposition: Exposition) -> None:
        import socket

        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.exposition = exposition
        super().__init__(address, _Handler)


def serve_metrics(exposition: Exposition, host: str, port: int) -> tuple[_Server, int]:
    """Serve `/metrics` from a daemon thread; returns the server (`shutdown()` stops it) and its port.

    Raises OSError when the address cannot be bound (a port in use, an address not on this machine).
    """
    server = _Server((host, port), exposition)
    threading.Thread(target=server.serve_forever, name="dspy-top-serve-metrics", daemon=True).start()
    return server, server.server_address[1]
