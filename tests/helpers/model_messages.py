"""What the model's pure tests fold: a fake clock, and process messages made by hand (counters, `stats` frames,
module entries, calls, scopes, a hello), with a fleet attached to one process and its optimizer runs."""

from __future__ import annotations

from dspy_top import latency
from dspy_top.model import Fleet
from dspy_top.protocol import Hello


class Clock:
    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def counters(
    calls=0,
    prompt=0,
    completion=0,
    cost=0.0,
    hits=0,
    errors=0,
    retries=0,
    unpriced=0,
    in_flight=0,
    latencies=(),
    last_at=0.0,
    saved=0.0,
):
    hist: dict[int, int] = {}
    for value in latencies:
        bucket = latency.bucket_of(value)
        hist[bucket] = hist.get(bucket, 0) + 1
    return {
        "calls": calls,
        "errors": errors,
        "retries": retries,
        "cache_hits": hits,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": cost,
        "unpriced_calls": unpriced,
        "cost_saved_usd": saved,
        "latency_s": sum(latencies),
        "in_flight": in_flight,
        "latency_sketch": latency.encode(hist),
        "last_at": last_at,
    }


def stats(totals, modules=(), models=(), scopes=(), dropped=0, at=0.0):
    return {
        "t": "stats",
        "at": at,
        "totals": totals,
        "modules": list(modules),
        "models": list(models),
        "scopes": list(scopes),
        "dropped_events": dropped,
        "dropped_viewer": 0,
        "internal_errors": 0,
        "tool_calls": 0,
        "tool_errors": 0,
    }


def module(path, chain, **kw):
    return {"path": path, "class": chain[-1], "chain": list(chain), **counters(**kw)}


def call(
    call_id,
    path="RAG.answer",
    start=1_000.0,
    latency_s=0.5,
    prompt=100,
    completion=10,
    cost=0.001,
    cache_hit=False,
    error=None,
    model="openai/gpt-4o-mini",
):
    return {
        "t": "call",
        "id": call_id,
        "seq": call_id,
        "start": start,
        "latency": latency_s,
        "path": path,
        "module_class": "Predict",
        "model": model,
        "response_model": None,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": cost,
        "cost_saved_usd": None,
        "cache_hit": cache_hit,
        "retries": 0,
        "error": error,
        "error_message": None,
        "scopes": [],
        "stream": False,
    }


def hello(pid, started_at=990.0, argv=("job.py",)):
    return Hello(
        version=1,
        pid=pid,
        argv=list(argv),
        cwd="/",
        started_at=started_at,
        python="3.11",
        dspy="3.4.1",
        dspy_top="0.1.0",
        mechanism="execution-hooks",
        history_capacity=1000,
    )


def attach(fleet, key, pid, snapshot_stats, calls=()):
    fleet.attach(key, pid)
    fleet.connected(key, hello(pid))
    fleet.fold(key, {"t": "snapshot", "stats": snapshot_stats, "calls": list(calls), "seq": len(calls)})


def scope(scope_id, kind, start, parent=None, state="running", end=None, usage=None, **extra):
    wire = {
        "t": f"{kind}_start" if state == "running" else f"{kind}_end",
        "id": scope_id,
        "kind": kind,
        "start": start,
        "end": end,
        "state": state,
        "parent": parent,
        **extra,
    }
    if usage is not None:
        wire["usage"] = usage
    return wire


def fleet_with(*messages, clock=None):
    clock = clock or Clock()
    fleet = Fleet(clock)
    fleet.attach("a", 7)
    fleet.connected("a", hello(7))
    fleet.fold("a", stats(counters()))
    for message in messages:
        fleet.fold("a", message)
    return fleet, clock


def runs_of(fleet):
    return {run.id: run for run in fleet.snapshot().optimizers}


MIPRO = dict(
    **{"class": "MIPROv2"},
    params={"auto": "light", "max_bootstrapped_demos": 4, "max_labeled_demos": 4},
    arguments={},
    predictors=1,
    trainset=20,
    valset=20,
)
