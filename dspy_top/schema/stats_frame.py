"""The readers of a `stats` frame and what it holds: counters, modules, models, scopes, budget alerts, and
what DSPy's history held before `dspy-top attach`."""

from __future__ import annotations

from typing import Any

from dspy_top import latency
from dspy_top.protocol import COUNT_FIELDS, USD_FIELDS
from dspy_top.schema.records import (
    EMPTY_COUNTERS,
    AlertRecord,
    BeforeAttachRecord,
    BudgetRecord,
    CountersRecord,
    ModuleRecord,
    ScopeRecord,
    StatsRecord,
)
from dspy_top.schema.values import (
    MAX_COUNT,
    MAX_LIST,
    BadMessage,
    _count,
    _epoch,
    _flag,
    _label,
    _list,
    _map,
    _maybe,
    _name,
    _names,
    _plain_map,
    _score,
    _seconds,
    _show,
    _text,
    _usd,
)


def stats(wire: Any, what: str = "stats") -> StatsRecord:
    """A `stats` map (a frame, or inside `snapshot` and `exit`)."""
    wire = _map(wire, what)
    modules = []
    for entry in _list(wire.get("modules"), f"{what} modules", MAX_LIST):
        entry = _map(entry, f"{what} module")
        path = _name(entry.get("path"), "module path", "(direct)")
        modules.append(
            ModuleRecord(
                path=path,
                class_name=_name(entry.get("class"), f"module {path!r} class", ""),
                chain=_names(entry.get("chain"), f"module {path!r} chain"),
                counters=counters(entry, f"module {path!r}"),
                by_model=_cells(entry.get("by_model"), path),
            )
        )
    models = []
    for entry in _list(wire.get("models"), f"{what} models", MAX_LIST):
        entry = _map(entry, f"{what} model")
        name = _name(entry.get("model"), "model name", "?")
        models.append((name, counters(entry, f"model {name!r}")))
    budget = wire.get("budget")
    before = wire.get("before_attach")
    return StatsRecord(
        totals=counters(wire.get("totals"), f"{what} totals"),
        modules=tuple(modules),
        models=tuple(models),
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
        at=_maybe(get("at"), _epoch, "before_attach at"),
        calls=_count(get("calls"), "before_attach calls"),
        history=_name(get("history"), "before_attach history", "unknown"),
        missing=_maybe(get("missing"), _count, "before_attach missing"),
        in_flight=_count(get("in_flight"), "before_attach in_flight"),
        in_flight_counted=_count(get("in_flight_counted"), "before_attach in_flight_counted"),
        settled=_flag(get("settled", True), "before_attach settled"),
        first_at=_maybe(get("first_at"), _epoch, "before_attach first_at"),
    )


def counters(wire: Any, what: str) -> CountersRecord:
    """Counters from a map; missing keys are zero."""
    if not wire:
        return EMPTY_COUNTERS
    get = _map(wire, what).get
    values: dict[str, Any] = {}
    for name in COUNT_FIELDS:
        value = get(name)
        values[name] = value if type(value) is int and 0 <= value <= MAX_COUNT else _count(value, f"{what} {name}")
    for name in USD_FIELDS:
        values[name] = _usd(get(name), f"{what} {name}") or 0.0
    sketch = get("latency_sketch")
    hist = _sketch(sketch, what) if sketch is not None else _legacy_hist(get("latency_hist"), what)
    return CountersRecord(
        **values,
        latency_s=_seconds(get("latency_s"), f"{what} latency_s"),
        latency_hist=hist,
        last_at=_epoch(get("last_at"), f"{what} last_at"),
    )


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
        id=scope_id,
        kind=_maybe(get("kind"), _label, f"{what} kind"),
        state=_maybe(get("state"), _label, f"{what} state"),
        start=_maybe(get("start"), _epoch, f"{what} start"),
        end=_maybe(get("end"), _epoch, f"{what} end"),
        parent=_maybe(get("parent"), _label, f"{what} parent"),
        class_name=_maybe(get("class"), _label, f"{what} class"),
        program=_maybe(get("program"), _label, f"{what} program"),
        done=_maybe(get("done"), _count, f"{what} done"),
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
        level=level,
        scope=_name(wire.get("scope"), "budget alert scope", "total"),
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
        limits.append(
            (
                _name(limit.get("scope"), "budget limit scope", "total"),
                _name(limit.get("name"), "budget limit name", ""),
                _usd(limit.get("usd"), "budget limit usd") or 0.0,
            )
        )
    return BudgetRecord(
        on_exceed=_name(wire.get("on_exceed"), "budget on_exceed", "warn"),
        limits=tuple(limits),
        alerts=tuple(alert(entry) for entry in _list(wire.get("alerts"), "budget alerts", MAX_LIST)),
    )


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
