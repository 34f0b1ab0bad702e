"""Evaluations and optimizer compiles (scopes) as the process reports them (see model/optimizers.py)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

from dspy_top import latency
from dspy_top.model.counters import EMPTY, Counters


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

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def score_so_far(self) -> float | None:
        """Percent, as `Evaluate` reports it."""
        if self.score is not None:
            return self.score
        return 100.0 * self.score_sum / self.done if self.done else None


def scope_from_wire(process: str, pid: int, wire: Mapping[str, Any], previous: ScopeState | None) -> ScopeState:
    """Merge one scope message (start, progress, end or a stats entry) into what was known."""

    def pick(key: str, default: Any) -> Any:
        if key in wire and wire[key] is not None:
            return wire[key]
        return getattr(previous, key) if previous is not None and hasattr(previous, key) else default

    kind = str(wire.get("kind") or (previous.kind if previous else "eval"))
    if kind == "compile":
        label = str(wire.get("class") or (previous.label if previous else "compile"))
    else:
        label = str(wire.get("program") or (previous.label if previous else "Evaluate"))
    usage = Counters.from_wire(wire["usage"]) if wire.get("usage") else (previous.usage if previous else EMPTY)
    score = wire.get("score")
    return ScopeState(
        process=process, pid=pid, id=str(wire.get("id")), kind=kind,
        state=str(pick("state", "running")), start=float(pick("start", 0.0)),
        end=float(wire["end"]) if wire.get("end") is not None else (previous.end if previous else None),
        parent=pick("parent", None), label=label,
        done=int(pick("done", 0)), total=int(pick("total", 0)),
        score_sum=float(pick("score_sum", 0.0)),
        score=float(score) if score is not None else (previous.score if previous else None),
        usage=usage, error=pick("error", None),
        metadata=_mapping(pick("metadata", {})), params=_mapping(pick("params", {})),
        arguments=_mapping(pick("arguments", {})), predictors=_int(pick("predictors", None)),
        trainset=_int(pick("trainset", None)), valset=_int(pick("valset", None)),
        num_threads=_int(pick("num_threads", None)),
    )


def add_late_call(scope: ScopeState, call: Any) -> ScopeState:
    """A call that finished after its scope's end message (the parallel executor may resubmit a slow
    example and not wait for the old thread): its usage joins the scope's, and it is no longer in flight."""
    usage = scope.usage
    billed = not call.cache_hit
    cost = call.cost_usd if billed and call.cost_usd is not None else 0.0
    unpriced = 1 if billed and call.cost_usd is None and (call.prompt_tokens or call.completion_tokens
                                                          or not call.usage_known) else 0
    hist = dict(usage.latency_hist)
    bucket = latency.bucket_of(call.latency)
    hist[bucket] = hist.get(bucket, 0) + 1
    return replace(scope, usage=replace(
        usage, calls=usage.calls + 1, errors=usage.errors + (1 if call.error else 0),
        retries=usage.retries + call.retries, cache_hits=usage.cache_hits + (0 if billed else 1),
        prompt_tokens=usage.prompt_tokens + call.prompt_tokens,
        completion_tokens=usage.completion_tokens + call.completion_tokens,
        cached_tokens=usage.cached_tokens + call.cached_tokens, cost_usd=usage.cost_usd + cost,
        unpriced_calls=usage.unpriced_calls + unpriced, latency_s=usage.latency_s + call.latency,
        unmetered_calls=usage.unmetered_calls + (0 if call.usage_known else 1),
        in_flight=max(0, usage.in_flight - 1), latency_hist=hist, last_at=max(usage.last_at, call.end),
    ))


def _mapping(value: Any) -> Mapping[str, Any]:
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
