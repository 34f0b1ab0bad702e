"""Every message a process sends, checked once: typed, range-checked records for the viewer to fold.

The protocol layer's one place of validation (standard library only, beside `protocol.py`):
`parse(message)` turns a decoded map into a record, or raises `BadMessage` naming the value
that is wrong. Numbers are finite and in sane ranges, counts are non-negative and bounded,
strings and lists are bounded (an over-long string is cut, not refused). What only travels for
display (scope parameters, payloads) is reduced to plain JSON-like values. The model folds
nothing else, so nothing a process sends can raise there or when the numbers are drawn.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from dspy_top import latency
from dspy_top.protocol import PROTOCOL_VERSION, Hello, ProtocolError

# Sane ranges: anything outside them is not a real process's figure.
MAX_COUNT = 2 ** 53  # calls, tokens, ids: exact in a float too, far beyond any real run
MAX_USD = 1e12
MAX_SECONDS = 1e10  # a duration (latency, summed wall time)
MAX_EPOCH = 1e11  # epoch seconds (the year 5138)
MAX_SCORE = 1e15  # a metric's value or sum, either sign
MAX_PID = 2 ** 31 - 1
# Bounds on size: longer strings are cut (with an ellipsis), longer lists refused.
MAX_NAME = 1024  # module paths, model names, classes, ids, labels
MAX_TEXT = 64 * 1024  # error messages, reasons, command-line arguments
MAX_PAYLOAD_TEXT = 1024 * 1024  # one string inside a payload (the process cuts at 256 KiB)
MAX_LIST = 100_000  # modules, models, scopes, rows of a batch, alerts, argv
MAX_HISTORY = 1_000_000  # calls in a snapshot (the 8 MiB frame holds far fewer)
MAX_CHAIN = 256  # classes in a module chain, scopes around a call
MAX_COLUMNS = 256
MAX_DEPTH = 32  # nesting of payloads and parameters


class BadMessage(ProtocolError, ValueError):
    """A message whose content does not fit the schema; the text says which value and why."""


class Record:
    """Base of every checked message: the model folds only these."""

    __slots__ = ()


# --- records ----------------------------------------------------------------------------


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
CALL_COLUMNS = ("id", "start", "latency", "path", "module_class", "model", "prompt_tokens", "completion_tokens",
                "cached_tokens", "cost_usd", "cost_saved_usd", "cache_hit", "retries", "error", "error_message",
                "response_model", "scopes", "usage_known")


# --- the entry point -------------------------------------------------------------------------


def parse(message: Mapping[str, Any] | Record) -> Record | None:
    """The checked record for one message; None for types the viewer does not fold (skipped)."""
    if isinstance(message, Record):
        return message
    if not isinstance(message, Mapping):
        raise BadMessage(f"a message is {_kind(message)}, not a map")
    kind = message.get("t")
    reader = _READERS.get(kind) if isinstance(kind, str) else None
    if reader is None:
        return None  # hello (read on connecting), tool, and types added later
    return reader(message)


def hello(message: Mapping[str, Any]) -> Hello:
    """A process's hello; a version other than this viewer's is refused with its own message."""
    version = message.get("v")
    if version != PROTOCOL_VERSION or type(version) is not int:
        raise BadMessage(f"process speaks dspy-top protocol version {_show(version)}; "
                         f"this viewer speaks {PROTOCOL_VERSION}")
    pid = message.get("pid")
    if type(pid) is not int or not 0 < pid <= MAX_PID:
        raise BadMessage(f"malformed hello: pid is {_show(pid)}")
    return Hello(
        version=version, pid=pid,
        argv=[_text(a, "hello argv") for a in _list(message.get("argv"), "hello argv", MAX_LIST)],
        cwd=_text(message.get("cwd"), "hello cwd"), started_at=_epoch(message.get("started_at"), "hello started_at"),
        python=_name(message.get("python"), "hello python", ""), dspy=_name(message.get("dspy"), "hello dspy", ""),
        dspy_top=_name(message.get("dspy_top"), "hello dspy_top", ""),
        mechanism=_name(message.get("mechanism"), "hello mechanism", ""),
        history_capacity=_count(message.get("history_capacity"), "hello history_capacity"),
    )


# --- messages ----------------------------------------------------------------------------------


def _calls(message: Mapping[str, Any]) -> CallsRecord:
    fields = _list(message.get("fields"), "calls fields", MAX_COLUMNS)
    rows = _list(message.get("rows"), "calls rows", MAX_LIST)
    index: dict[str, int] = {}
    for position, name in enumerate(fields):
        if type(name) is not str:
            raise BadMessage(f"calls field {position} is {_kind(name)}, not a name")
        index.setdefault(name, position)
    width = len(fields)
    if "id" not in index:
        raise BadMessage("calls batch without an id column")
    pick = itemgetter(*(index.get(name, width) for name in CALL_COLUMNS))  # a missing column reads None
    checked = []
    for number, row in enumerate(rows):
        if type(row) not in (list, tuple) or len(row) != width:
            raise BadMessage(f"calls row {number} is {_kind(row)}, not {width} values")
        try:
            checked.append(call_row(*pick((*row, None))))
        except BadMessage as exc:
            raise BadMessage(f"calls row {number}: {exc}") from None
    return CallsRecord(tuple(checked))


def _call(message: Mapping[str, Any]) -> CallsRecord:
    return CallsRecord((call_map(message),))


def call_map(wire: Mapping[str, Any]) -> tuple:
    """One call as a map (a `call` message, an entry of a snapshot's `calls`) as a checked row."""
    if not isinstance(wire, Mapping):
        raise BadMessage(f"a call is {_kind(wire)}, not a map")
    get = wire.get
    return call_row(*(get(name) for name in CALL_COLUMNS))


def call_row(call_id, start, latency_s, path, module_class, model, prompt, completion, cached, cost, saved,
             cache_hit, retries, error, error_message, response_model, scopes, usage_known=None) -> tuple:
    """One call's values, checked, in `CALL_COLUMNS` order. The viewer's hot path: the common
    case (well-typed values in range) is tested inline; anything else takes the slow checks."""
    if not (type(call_id) is int and 0 <= call_id <= MAX_COUNT):
        if call_id is None:
            raise BadMessage("a call without an id")
        call_id = _count(call_id, "call id")
    if not (type(start) is float and 0.0 <= start <= MAX_EPOCH):
        start = _epoch(start, "call start")
    if not (type(latency_s) is float and 0.0 <= latency_s <= MAX_SECONDS):
        latency_s = _seconds(latency_s, "call latency")
    path = path if type(path) is str and 0 < len(path) <= MAX_NAME else _name(path, "call path", "(direct)")
    if not (type(module_class) is str and len(module_class) <= MAX_NAME):
        module_class = _name(module_class, "call module_class", "")
    model = model if type(model) is str and 0 < len(model) <= MAX_NAME else _name(model, "call model", "?")
    if not (type(prompt) is int and 0 <= prompt <= MAX_COUNT):
        prompt = _count(prompt, "call prompt_tokens")
    if not (type(completion) is int and 0 <= completion <= MAX_COUNT):
        completion = _count(completion, "call completion_tokens")
    if not (type(cached) is int and 0 <= cached <= MAX_COUNT):
        cached = _count(cached, "call cached_tokens")
    if cost is not None and not (type(cost) is float and 0.0 <= cost <= MAX_USD):
        cost = _usd(cost, "call cost_usd")
    if saved is not None and not (type(saved) is float and 0.0 <= saved <= MAX_USD):
        saved = _usd(saved, "call cost_saved_usd")
    if type(cache_hit) is not bool:
        cache_hit = _flag(cache_hit, "call cache_hit")
    if not (type(retries) is int and 0 <= retries <= MAX_COUNT):
        retries = _count(retries, "call retries")
    if error is not None:
        error = _name(error, "call error", "")
    if error_message is not None:
        error_message = _text(error_message, "call error_message")
    if response_model is not None:
        response_model = _name(response_model, "call response_model", "")
    scopes = _names(scopes, "call scopes") if scopes else ()
    if type(usage_known) is not bool:  # a process that does not send it always knew the tokens
        usage_known = True if usage_known is None else _flag(usage_known, "call usage_known")
    return (call_id, start, latency_s, path, module_class, model, prompt, completion, cached, cost, saved,
            cache_hit, retries, error, error_message, response_model, scopes, usage_known)


def stats(wire: Any, what: str = "stats") -> StatsRecord:
    """A `stats` map (a frame, or inside `snapshot` and `exit`)."""
    wire = _map(wire, what)
    modules = []
    for entry in _list(wire.get("modules"), f"{what} modules", MAX_LIST):
        entry = _map(entry, f"{what} module")
        path = _name(entry.get("path"), "module path", "(direct)")
        modules.append(ModuleRecord(
            path=path, class_name=_name(entry.get("class"), f"module {path!r} class", ""),
            chain=_names(entry.get("chain"), f"module {path!r} chain"),
            counters=counters(entry, f"module {path!r}"), by_model=_cells(entry.get("by_model"), path)))
    models = []
    for entry in _list(wire.get("models"), f"{what} models", MAX_LIST):
        entry = _map(entry, f"{what} model")
        name = _name(entry.get("model"), "model name", "?")
        models.append((name, counters(entry, f"model {name!r}")))
    budget = wire.get("budget")
    before = wire.get("before_attach")
    return StatsRecord(
        totals=counters(wire.get("totals"), f"{what} totals"), modules=tuple(modules), models=tuple(models),
        scopes=tuple(scope(entry) for entry in _list(wire.get("scopes"), f"{what} scopes", MAX_LIST)),
        dropped_events=_count(wire.get("dropped_events"), f"{what} dropped_events"),
        dropped_viewer=_count(wire.get("dropped_viewer"), f"{what} dropped_viewer"),
        internal_errors=_count(wire.get("internal_errors"), f"{what} internal_errors"),
        tool_calls=_count(wire.get("tool_calls"), f"{what} tool_calls"),
        tool_errors=_count(wire.get("tool_errors"), f"{what} tool_errors"),
        budget=_budget(budget) if budget else None,
        before_attach=_before_attach(before) if before else None,
    )


def _before_attach(wire: Any) -> BeforeAttachRecord:
    wire = _map(wire, "stats before_attach")
    get = wire.get
    return BeforeAttachRecord(
        at=_maybe(get("at"), _epoch, "before_attach at"), calls=_count(get("calls"), "before_attach calls"),
        history=_name(get("history"), "before_attach history", "unknown"),
        missing=_maybe(get("missing"), _count, "before_attach missing"),
        in_flight=_count(get("in_flight"), "before_attach in_flight"),
        in_flight_counted=_count(get("in_flight_counted"), "before_attach in_flight_counted"),
        settled=_flag(get("settled", True), "before_attach settled"),
        first_at=_maybe(get("first_at"), _epoch, "before_attach first_at"))


_COUNT_FIELDS = ("calls", "errors", "retries", "cache_hits", "prompt_tokens", "completion_tokens", "cached_tokens",
                 "reasoning_tokens", "unpriced_calls", "unmetered_calls", "in_flight")
_USD_FIELDS = ("cost_usd", "cost_saved_usd")


def counters(wire: Any, what: str) -> CountersRecord:
    """Counters from a map; missing keys are zero."""
    if not wire:
        return EMPTY_COUNTERS
    get = _map(wire, what).get
    values: dict[str, Any] = {}
    for name in _COUNT_FIELDS:
        value = get(name)
        values[name] = value if type(value) is int and 0 <= value <= MAX_COUNT else _count(value, f"{what} {name}")
    for name in _USD_FIELDS:
        values[name] = _usd(get(name), f"{what} {name}") or 0.0
    sketch = get("latency_sketch")
    hist = _sketch(sketch, what) if sketch is not None else _legacy_hist(get("latency_hist"), what)
    return CountersRecord(**values, latency_s=_seconds(get("latency_s"), f"{what} latency_s"),
                          latency_hist=hist, last_at=_epoch(get("last_at"), f"{what} last_at"))


def _sketch(wire: Any, what: str) -> dict[int, int]:
    """`latency_sketch`: `[k0, n0, dk1, n1, ...]`, buckets strictly increasing within 0..BUCKETS-1."""
    values = _list(wire, f"{what} latency_sketch", 2 * latency.BUCKETS)
    if len(values) % 2:
        raise BadMessage(f"{what} latency_sketch has an odd length ({len(values)}), not bucket/count pairs")
    hist: dict[int, int] = {}
    bucket = -1
    for index in range(0, len(values), 2):
        step = values[index]
        if type(step) is not int or step < (0 if index == 0 else 1):
            raise BadMessage(f"{what} latency_sketch bucket step {_show(step)} is not a positive integer")
        bucket = step if index == 0 else bucket + step
        if bucket >= latency.BUCKETS:
            raise BadMessage(f"{what} latency bucket {bucket} is not one of 0..{latency.BUCKETS - 1}")
        hist[bucket] = _count(values[index + 1], f"{what} latency bucket {bucket}")
    return hist


def _legacy_hist(wire: Any, what: str) -> dict[int, int]:
    """`latency_hist` as jobs before `latency_sketch` sent it (coarse buckets), as a sketch."""
    hist: dict[int, int] = {}
    for bucket, count in _map(wire or {}, f"{what} latency_hist").items():
        if type(bucket) is not int or not 0 <= bucket < latency.LEGACY_BUCKETS:
            raise BadMessage(f"{what} latency bucket {_show(bucket)} is not one of 0..{latency.LEGACY_BUCKETS - 1}")
        hist[bucket] = _count(count, f"{what} latency bucket {bucket}")
    return latency.from_legacy(hist) if hist else hist


EMPTY_COUNTERS = CountersRecord()


def scope(wire: Any) -> ScopeRecord:
    """A scope message or a `stats.scopes` entry."""
    wire = _map(wire, "scope")
    get = wire.get
    scope_id = get("id")
    if scope_id is None:
        return ScopeRecord(None)
    scope_id = str(scope_id) if type(scope_id) is int else _name(scope_id, "scope id", "")
    what = f"scope {scope_id!r}"
    usage = get("usage")
    return ScopeRecord(
        id=scope_id, kind=_maybe(get("kind"), _label, f"{what} kind"),
        state=_maybe(get("state"), _label, f"{what} state"),
        start=_maybe(get("start"), _epoch, f"{what} start"), end=_maybe(get("end"), _epoch, f"{what} end"),
        parent=_maybe(get("parent"), _label, f"{what} parent"),
        class_name=_maybe(get("class"), _label, f"{what} class"),
        program=_maybe(get("program"), _label, f"{what} program"), done=_maybe(get("done"), _count, f"{what} done"),
        total=_maybe(get("total"), _count, f"{what} total"),
        score_sum=_maybe(get("score_sum"), _score, f"{what} score_sum"),
        score=_maybe(get("score"), _score, f"{what} score"),
        usage=counters(usage, f"{what} usage") if usage else None,
        error=_maybe(get("error"), _text, f"{what} error"),
        metadata=_maybe(get("metadata"), _plain_map, f"{what} metadata"),
        params=_maybe(get("params"), _plain_map, f"{what} params"),
        arguments=_maybe(get("arguments"), _plain_map, f"{what} arguments"),
        predictors=_maybe(get("predictors"), _count, f"{what} predictors"),
        trainset=_maybe(get("trainset"), _count, f"{what} trainset"),
        valset=_maybe(get("valset"), _count, f"{what} valset"),
        num_threads=_maybe(get("num_threads"), _count, f"{what} num_threads"),
        joined=_maybe(get("joined"), _plain_map, f"{what} joined"),
    )


def alert(wire: Any) -> AlertRecord:
    """A `budget` message or a `stats.budget.alerts` entry."""
    wire = _map(wire, "budget alert")
    level = wire.get("level")
    level = str(level) if type(level) is int and 0 <= level <= 1000 else _name(level, "budget alert level", "")
    return AlertRecord(
        level=level, scope=_name(wire.get("scope"), "budget alert scope", "total"),
        name=_name(wire.get("name"), "budget alert name", ""),
        spent_usd=_usd(wire.get("spent_usd"), "budget alert spent_usd"),
        budget_usd=_usd(wire.get("budget_usd"), "budget alert budget_usd"),
        action=_name(wire.get("action"), "budget alert action", ""),
        message=_text(wire.get("message"), "budget alert message"),
    )


def _budget(wire: Any) -> BudgetRecord:
    wire = _map(wire, "stats budget")
    limits = []
    for limit in _list(wire.get("limits"), "budget limits", MAX_LIST):
        limit = _map(limit, "budget limit")
        limits.append((_name(limit.get("scope"), "budget limit scope", "total"),
                       _name(limit.get("name"), "budget limit name", ""),
                       _usd(limit.get("usd"), "budget limit usd") or 0.0))
    return BudgetRecord(
        on_exceed=_name(wire.get("on_exceed"), "budget on_exceed", "warn"), limits=tuple(limits),
        alerts=tuple(alert(entry) for entry in _list(wire.get("alerts"), "budget alerts", MAX_LIST)),
    )


def _snapshot(message: Mapping[str, Any]) -> SnapshotRecord:
    calls = _list(message.get("calls"), "snapshot calls", MAX_HISTORY)
    rows = []
    for number, call in enumerate(calls):
        try:
            rows.append(call_map(call))
        except BadMessage as exc:
            raise BadMessage(f"snapshot call {number}: {exc}") from None
    return SnapshotRecord(stats(message.get("stats") or {}, "snapshot stats"), tuple(rows),
                          _count(message.get("seq"), "snapshot seq"))


def _exit(message: Mapping[str, Any]) -> ExitRecord:
    code = message.get("returncode", message.get("exit_code"))
    if code is not None and not (type(code) is int and -MAX_PID <= code <= MAX_PID):
        raise BadMessage(f"exit code is {_show(code)}")
    final = message.get("stats")
    return ExitRecord(at=_maybe(message.get("at"), _epoch, "exit at"),
                      stats=stats(final, "exit stats") if final else None, code=code,
                      detached=_flag(message.get("detached", False), "exit detached"))


def _error(message: Mapping[str, Any]) -> ErrorRecord:
    return ErrorRecord(_text(message.get("reason"), "error reason") or "no reason given")


def _payload(message: Mapping[str, Any]) -> PayloadRecord:
    payload = message.get("payload")
    found = _flag(message.get("found"), "payload found")
    return PayloadRecord(
        req=_count(message.get("req"), "payload req"), id=_count(message.get("id"), "payload id"), found=found,
        payload=_plain_map(payload, "payload") if found and payload is not None else None,
        reason=_maybe(message.get("reason"), _text, "payload reason"),
    )


_READERS = {
    "calls": _calls, "call": _call, "stats": stats, "snapshot": _snapshot, "exit": _exit, "error": _error,
    "budget": alert, "payload": _payload, "eval_start": scope, "eval_progress": scope, "eval_end": scope,
    "compile_start": scope, "compile_end": scope,
}


# --- values ------------------------------------------------------------------------------------


def _show(value: Any) -> str:
    """A value in an error message: its repr (control characters escaped), cut short."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {_show(value)}"


def _count(value: Any, what: str) -> int:
    """A non-negative bounded integer; None (absent) is 0."""
    if type(value) is int:
        if 0 <= value <= MAX_COUNT:
            return value
    elif value is None:
        return 0
    elif type(value) is float and value.is_integer() and 0 <= value <= MAX_COUNT:
        return int(value)
    raise BadMessage(f"{what} is {_show(value)}, not a count (0 to 2**53)")


def _number(value: Any, what: str, low: float, high: float, unit: str) -> float:
    if type(value) in (float, int) and low <= value <= high:  # NaN fails both comparisons
        return float(value)
    raise BadMessage(f"{what} is {_show(value)}, not {unit}")


def _epoch(value: Any, what: str) -> float:
    """Epoch seconds; None (absent) is 0 (never)."""
    return 0.0 if value is None else _number(value, what, 0.0, MAX_EPOCH, "a time (epoch seconds)")


def _seconds(value: Any, what: str) -> float:
    return 0.0 if value is None else _number(value, what, 0.0, MAX_SECONDS, "a duration in seconds")


def _usd(value: Any, what: str) -> float | None:
    """Dollars; None stays None (unknown, never 0)."""
    return None if value is None else _number(value, what, 0.0, MAX_USD, "an amount of dollars")


def _score(value: Any, what: str) -> float:
    return _number(value, what, -MAX_SCORE, MAX_SCORE, "a finite score")


def _flag(value: Any, what: str) -> bool:
    if type(value) is bool:
        return value
    if value is None:
        return False
    if type(value) is int and value in (0, 1):
        return bool(value)
    raise BadMessage(f"{what} is {_show(value)}, not true or false")


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _name(value: Any, what: str, default: str) -> str:
    """A short string (a name, a path); None or empty is `default`."""
    if type(value) is str:
        return _cut(value, MAX_NAME) if value else default
    if value is None:
        return default
    raise BadMessage(f"{what} is {_kind(value)}, not a string")


def _text(value: Any, what: str) -> str:
    """A longer string (a message); None is empty."""
    if type(value) is str:
        return _cut(value, MAX_TEXT)
    if value is None:
        return ""
    raise BadMessage(f"{what} is {_kind(value)}, not a string")


def _names(value: Any, what: str) -> tuple[str, ...]:
    return tuple(_name(item, what, "") for item in _list(value, what, MAX_CHAIN))


def _list(value: Any, what: str, limit: int) -> list | tuple:
    if value is None:
        return ()
    if type(value) not in (list, tuple):
        raise BadMessage(f"{what} is {_kind(value)}, not a list")
    if len(value) > limit:
        raise BadMessage(f"{what} holds {len(value):,} entries (at most {limit:,})")
    return value


def _map(value: Any, what: str) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    raise BadMessage(f"{what} is {_kind(value)}, not a map")


def _maybe(value: Any, check, what: str) -> Any:
    """None stays None (not said); anything else must pass `check`."""
    return None if value is None else check(value, what)


def _label(value: Any, what: str) -> str:
    return _name(value, what, "")


def _cells(wire: Any, path: str) -> dict[str, tuple[int, int, int]] | None:
    """A module's `by_model`: billed [prompt, completion, cached] tokens per model."""
    if not wire:
        return None
    what = f"module {path!r} by_model"
    wire = _map(wire, what)
    if len(wire) > MAX_LIST:
        raise BadMessage(f"{what} holds {len(wire):,} models (at most {MAX_LIST:,})")
    cells = {}
    for model, values in wire.items():
        name = _name(model, what, "?")
        values = _list(values, f"{what} {name!r}", 3)
        prompt, completion, cached = (*values, 0, 0, 0)[:3]
        cells[name] = (_count(prompt, what), _count(completion, what), _count(cached, what))
    return cells


def _plain_map(value: Any, what: str) -> dict[str, Any]:
    """A map shown as it is (parameters, payloads): string keys, plain bounded values."""
    if not isinstance(value, Mapping):
        raise BadMessage(f"{what} is {_kind(value)}, not a map")
    return _plain(value, 0)


def _plain(value: Any, depth: int) -> Any:
    """JSON-like data with bounded nesting and strings; what JSON cannot hold becomes its text."""
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return value
    if kind is str:
        return _cut(value, MAX_PAYLOAD_TEXT)
    if kind is float:
        return value if math.isfinite(value) else repr(value)
    if depth >= MAX_DEPTH:
        return "…"
    if kind in (list, tuple):
        return [_plain(item, depth + 1) for item in value]
    if isinstance(value, Mapping):
        return {(_cut(key, MAX_NAME) if type(key) is str else _show(key)): _plain(item, depth + 1)
                for key, item in value.items()}
    return _show(value)  # bytes, msgpack extension types
