"""The figures both exporters publish, read from `JobView`s: one table of counters, the latency buckets, runs.

Every counter is a job's exact total as its last `stats` frame said (docs/protocol.md, "Counters"),
never a sum of call events, so a dropped event never makes a figure wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from dspy_top import latency
from dspy_top.model.counters import Counters
from dspy_top.model.optimizers import derive as derive_runs
from dspy_top.model.optimizers.rules import EVALUATE
from dspy_top.serve.watch import JobView


@dataclass(frozen=True)
class Figure:
    """One counter of `Counters`, by module (`dspy_lm_<name>`) and by model (`dspy_lm_model_<name>`)."""

    name: str  # Prometheus name without `dspy_lm_` and `_total`; OpenTelemetry `dspy.lm.<name>`
    unit: str  # OpenTelemetry unit
    help: str
    value: Callable[[Counters], float]


COUNTERS = (
    Figure(
        "calls",
        "{call}",
        "DSPy LM calls finished, ok or failed, cache hits included (retries are not calls)",
        lambda c: c.calls,
    ),
    Figure(
        "cost_usd",
        "USD",
        "billed cost of priced calls, as DSPy/litellm priced them (cache hits cost 0)",
        lambda c: c.cost_usd,
    ),
    Figure(
        "cost_saved_usd", "USD", "what the calls answered from DSPy's cache originally cost", lambda c: c.cost_saved_usd
    ),
    Figure("cache_hits", "{call}", "calls answered from DSPy's memory or disk cache", lambda c: c.cache_hits),
    Figure("errors", "{call}", "calls that raised", lambda c: c.errors),
    Figure("retries", "{attempt}", "extra provider attempts made inside calls", lambda c: c.retries),
    Figure(
        "unpriced_calls",
        "{call}",
        "billed calls with tokens but no known price (their cost is not in cost_usd)",
        lambda c: c.unpriced_calls,
    ),
    Figure(
        "unmetered_calls",
        "{call}",
        "billed calls whose token usage DSPy did not report (their tokens are not in tokens_total: unknown, not 0)",
        lambda c: c.unmetered_calls,
    ),
)
# dspy_lm_tokens_total{type=...}: billed tokens (cache hits add none); cached and reasoning are part of input/output.
TOKENS = (
    ("input", lambda c: c.prompt_tokens),
    ("output", lambda c: c.completion_tokens),
    ("cached", lambda c: c.cached_tokens),
    ("reasoning", lambda c: c.reasoning_tokens),
)

# Latency buckets as Prometheus `le` bounds: the edge of the sketch's bucket (dspy_top/latency.py) at
# or just above (within 2%) each of 16 ms doubling to 262 s, so each cumulative count is exact, not
# interpolated. The edges are written in full (prometheus.py): rounded, one would no longer be one.
LATENCY_BUCKETS = tuple(latency.bucket_of(0.016 * 2**n) for n in range(15))
LATENCY_BOUNDS = tuple(latency.upper_bound(k) for k in LATENCY_BUCKETS)


def cumulative_buckets(hist: dict[int, int]) -> tuple[list[int], int]:
    """Cumulative counts at each of LATENCY_BOUNDS, and the count of all (the +Inf bucket)."""
    counts = []
    running = 0
    items = sorted(hist.items())
    index = 0
    for bucket in LATENCY_BUCKETS:
        while index < len(items) and items[index][0] <= bucket:
            running += items[index][1]
            index += 1
        counts.append(running)
    return counts, running + sum(count for _, count in items[index:])


@dataclass(frozen=True)
class RunFigure:
    """An optimizer run's trials and best score, or a plain evaluation's score (percent, as `Evaluate` says)."""

    id: str
    optimizer: str  # the optimizer class; `Evaluate` for an evaluation outside any optimizer
    label: str
    trials: int  # finished evaluations (trials) so far
    best_score: float | None
    score: float | None  # a plain evaluation: its score so far, then its final score

    @property
    def evaluation(self) -> bool:
        return self.optimizer == EVALUATE


def runs(job: JobView, now: float, limit: int) -> Iterator[RunFigure]:
    """The job's newest `limit` optimizer runs and plain evaluations."""
    derived = sorted(derive_runs(job.scopes, now), key=lambda run: (run.start, run.id))[-limit:]
    for run in derived:
        finished = sum(1 for trial in run.trials if trial.state != "running")
        score = run.trials[-1].running_score if run.class_name == EVALUATE and run.trials else None
        yield RunFigure(run.id, run.class_name, run.label, finished, run.best_score, score)
