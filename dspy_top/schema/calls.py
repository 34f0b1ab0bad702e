"""The readers of call events: a `calls` batch (rows under named columns), one `call` map, and one call's values
checked as a row in `CALL_COLUMNS` order, the viewer's hot path."""

from __future__ import annotations

from collections.abc import Mapping
from operator import itemgetter
from typing import Any

from dspy_top.schema.records import CALL_COLUMNS, CallsRecord
from dspy_top.schema.values import (
    MAX_COLUMNS,
    MAX_COUNT,
    MAX_EPOCH,
    MAX_LIST,
    MAX_NAME,
    MAX_SECONDS,
    MAX_USD,
    BadMessage,
    _count,
    _epoch,
    _flag,
    _kind,
    _list,
    _name,
    _names,
    _seconds,
    _text,
    _usd,
)


def read_calls(message: Mapping[str, Any]) -> CallsRecord:
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


def read_call(message: Mapping[str, Any]) -> CallsRecord:
    return CallsRecord((call_map(message),))


def call_map(wire: Mapping[str, Any]) -> tuple:
    """One call as a map (a `call` message, an entry of a snapshot's `calls`) as a checked row."""
    if not isinstance(wire, Mapping):
        raise BadMessage(f"a call is {_kind(wire)}, not a map")
    get = wire.get
    return call_row(*(get(name) for name in CALL_COLUMNS))


def call_row(
    call_id,
    start,
    latency_s,
    path,
    module_class,
    model,
    prompt,
    completion,
    cached,
    cost,
    saved,
    cache_hit,
    retries,
    error,
    error_message,
    response_model,
    scopes,
    usage_known=None,
) -> tuple:
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
    return (
        call_id,
        start,
        latency_s,
        path,
        module_class,
        model,
        prompt,
        completion,
        cached,
        cost,
        saved,
        cache_hit,
        retries,
        error,
        error_message,
        response_model,
        scopes,
        usage_known,
    )
