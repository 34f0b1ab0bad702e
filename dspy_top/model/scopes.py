"""Evaluations and optimizer compiles (scopes) as the process reports them (see model/optimizers.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dspy_top import latency, schema
from dspy_top.model.counters import EMPTY, Counters
from dspy_top.schema.records import ScopeRecord


@dataclass(frozen=True)
class ScopeState:
    """One `dspy.Evaluate` call or optimizer `compile` in one process."""

    process: str
    pid: int
    id: str
    kind: str  # "eval" | "compile"
    state: str  # "running" | "done" | "failed"
    start: float
    end: float | None
    parent: str | None
    label: str  # optimizer class, or the evaluated program
    done: int
    total: int
    score_sum: float
    score: float | None
    usage: Counters
    error: str | None
    # What the start event describes: eval `metadata` (e.g. {"metric_key": "eval_full"}), compile
    # `params`, `arguments` and `predictors`, and the data sizes.
    metadata: Mapping[str, Any] = field(default_factory=dict)
    params: Mapping[str, Any] = field(default_factory=dict)
    arguments: Mapping[str, Any] = field(default_factory=dict)
    predictors: int | None = None
    trainset: int | None = None
    valset: int | None = None
    num_threads: int | None = None
    # Under way when `dspy-top attach` came: {"at", "missed" (evaluations not seen, None: unknown),
    # "trial" (the optimizer's own trial number then), "usage": "unknown" for an evaluation}.
    joined: Mapping[str, Any] | None = None

    @property
    def usage_known(self) -> bool:
        """False for an evaluation joined mid-way: its calls could not be told apart."""
        return not (self.joined and self.joined.get("usage") == "unknown")

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def score_so_far(self) -> float | None:
        """Percent, as `Evaluate` reports it."""
        if self.score is not None:
            return self.score
        return 100.0 * self.score_sum / self.done if self.done else None


def scope_from_record(process: str, pid: int, record: ScopeRecord, previous: ScopeState | None) -> ScopeState:
    """Merge one checked scope message (start, progress, end or a stats entry) into what was known.

    A value the message does not give (None) keeps what was known before."""

    def pick(value: Any, key: str, default: Any) -> Any:
        if value is not None:
            return value
        return getattr(previous, key) if previous is not None else default

    kind = pick(record.kind, "kind", "eval")
    label_wire = record.class_name if kind == "compile" else record.program
    label = label_wire or (previous.label if previous else ("compile" if kind == "compile" else "Evaluate"))
    usage = Counters.from_record(record.usage) if record.usage else (previous.usage if previous else EMPTY)
    return ScopeState(
        process=process,
        pid=pid,
        id=record.id or "",
        kind=kind,
        state=pick(record.state, "state", "running"),
        start=pick(record.start, "start", 0.0),
        end=pick(record.end, "end", None),
        parent=pick(record.parent, "parent", None),
        label=label,
        done=pick(record.done, "done", 0),
        total=pick(record.total, "total", 0),
        score_sum=pick(record.score_sum, "score_sum", 0.0),
        score=pick(record.score, "score", None),
        usage=usage,
        error=pick(record.error, "error", None),
        metadata=pick(record.metadata, "metadata", {}),
        params=pick(record.params, "params", {}),
        arguments=pick(record.arguments, "arguments", {}),
        predictors=pick(record.predictors, "predictors", None),
        trainset=pick(record.trainset, "trainset", None),
        valset=pick(record.valset, "valset", None),
        num_threads=pick(record.num_threads, "num_threads", None),
        joined=pick(record.joined, "joined", None),
    )


def scope_from_wire(process: str, pid: int, wire: Mapping[str, Any], previous: ScopeState | None) -> ScopeState:
    """The same from a scope map, checked first (raises `schema.BadMessage`, a ValueError)."""
    return scope_from_record(process, pid, schema.scope(wire), previous)


def add_late_call(scope: ScopeState, call: Any) -> ScopeState:
    """A call that finished after its scope's end message (the parallel executor may resubmit a slow
    example and not wait for the old thread): its usage joins the scope's, and it is no longer in flight."""
    usage = scope.usage
    billed = not call.cache_hit
    cost = call.cost_usd if billed and call.cost_usd is not None else 0.0
    unpriced = (
        1
        if billed and call.cost_usd is None and (call.prompt_tokens or call.completion_tokens or not call.usage_known)
        else 0
    )
    hist = dict(usage.latency_hist)
    bucket = latency.bucket_of(call.latency)
    hist[bucket] = hist.get(bucket, 0) + 1
    return replace(
        scope,
        usage=replace(
            usage,
            calls=usage.calls + 1,
            errors=usage.errors + (1 if call.error else 0),
            retries=usage.retries + call.retries,
            cache_hits=usage.cache_hits + (0 if billed else 1),
            prompt_tokens=usage.prompt_tokens + call.prompt_tokens,
            completion_tokens=usage.completion_tokens + call.completion_tokens,
            cached_tokens=usage.cached_tokens + call.cached_tokens,
            cost_usd=usage.cost_usd + cost,
            unpriced_calls=usage.unpriced_calls + unpriced,
            latency_s=usage.latency_s + call.latency,
            unmetered_calls=usage.unmetered_calls + (0 if call.usage_known else 1),
            in_flight=max(0, usage.in_flight - 1),
            latency_hist=hist,
            last_at=max(usage.last_at, call.end),
        ),
    )
