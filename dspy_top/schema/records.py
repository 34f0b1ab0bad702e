"""The checked messages: frozen, typed records the model folds (docs/protocol.md says what each field means)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class Record:
    """Base of every checked message: the model folds only these."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class CountersRecord(Record):
    """One set of exact counters (docs/protocol.md, "Counters")."""

    calls: int = 0
    errors: int = 0
    retries: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    unmetered_calls: int = 0
    cost_saved_usd: float = 0.0
    latency_s: float = 0.0
    in_flight: int = 0
    latency_hist: Mapping[int, int] = field(default_factory=dict)
    last_at: float = 0.0


@dataclass(frozen=True, slots=True)
class ModuleRecord(Record):
    """One module path's counters in a `stats` frame, with its class, chain and per-model token cells."""

    path: str
    class_name: str
    chain: tuple[str, ...]
    counters: CountersRecord
    by_model: Mapping[str, tuple[int, int, int]] | None


@dataclass(frozen=True, slots=True)
class AlertRecord(Record):
    """A `budget` message (or one of `stats.budget.alerts`)."""

    level: str
    scope: str
    name: str
    spent_usd: float | None
    budget_usd: float | None
    action: str
    message: str


@dataclass(frozen=True, slots=True)
class BudgetRecord(Record):
    """`stats.budget`: the job's guard, its limits as (scope, name, usd) and the alerts so far."""

    on_exceed: str
    limits: tuple[tuple[str, str, float], ...]
    alerts: tuple[AlertRecord, ...]


@dataclass(frozen=True, slots=True)
class ScopeRecord(Record):
    """A scope message or `stats.scopes` entry; None means "not said" (the previous value stays)."""

    id: str | None
    kind: str | None = None
    state: str | None = None
    start: float | None = None
    end: float | None = None
    parent: str | None = None
    class_name: str | None = None
    program: str | None = None
    done: int | None = None
    total: int | None = None
    score_sum: float | None = None
    score: float | None = None
    usage: CountersRecord | None = None
    error: str | None = None
    metadata: Mapping[str, Any] | None = None
    params: Mapping[str, Any] | None = None
    arguments: Mapping[str, Any] | None = None
    predictors: int | None = None
    trainset: int | None = None
    valset: int | None = None
    num_threads: int | None = None
    joined: Mapping[str, Any] | None = None  # under way at `dspy-top attach`: {at, missed, trial, usage}


@dataclass(frozen=True, slots=True)
class BeforeAttachRecord(Record):
    """`stats.before_attach`: what DSPy's history held when `dspy-top attach` came."""

    at: float | None
    calls: int
    history: str
    missing: int | None
    in_flight: int = 0
    in_flight_counted: int = 0
    settled: bool = True
    first_at: float | None = None


@dataclass(frozen=True, slots=True)
class StatsRecord(Record):
    """A `stats` frame (also inside `snapshot` and `exit`)."""

    totals: CountersRecord
    modules: tuple[ModuleRecord, ...] = ()
    models: tuple[tuple[str, CountersRecord], ...] = ()
    scopes: tuple[ScopeRecord, ...] = ()
    dropped_events: int = 0
    dropped_viewer: int = 0
    internal_errors: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    budget: BudgetRecord | None = None
    before_attach: BeforeAttachRecord | None = None


@dataclass(frozen=True, slots=True)
class CallsRecord(Record):
    """Call events (a `calls` batch or one `call`): rows of checked values in `CALL_COLUMNS` order."""

    rows: tuple[tuple, ...]


@dataclass(frozen=True, slots=True)
class SnapshotRecord(Record):
    """What a viewer gets on attaching: the stats with every kept scope, and the recent calls."""

    stats: StatsRecord
    calls: tuple[tuple, ...]
    seq: int


@dataclass(frozen=True, slots=True)
class ExitRecord(Record):
    """The process's last message: its final counters and, when it says, its exit code."""

    at: float | None
    stats: StatsRecord | None
    code: int | None
    detached: bool = False  # `dspy-top detach`: the process runs on, no longer instrumented
    recording: str | None = None  # the file it recorded to: its payloads are read from there


@dataclass(frozen=True, slots=True)
class ErrorRecord(Record):
    """The process refused this viewer; it closes the connection next."""

    reason: str


@dataclass(frozen=True, slots=True)
class PayloadRecord(Record):
    """The answer to `get_payload`: plain JSON-like data, or why there is none."""

    req: int
    id: int
    found: bool
    payload: Mapping[str, Any] | None
    reason: str | None


# The columns of a checked call row, in order (what `model.CallSummary` holds after process and pid).
CALL_COLUMNS = (
    "id",
    "start",
    "latency",
    "path",
    "module_class",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "cost_saved_usd",
    "cache_hit",
    "retries",
    "error",
    "error_message",
    "response_model",
    "scopes",
    "usage_known",
)


EMPTY_COUNTERS = CountersRecord()
