"""Every message a process sends, checked once: typed, range-checked records for the viewer to fold.

The protocol layer's one place of validation (standard library only, beside `protocol.py`):
`parse(message)` turns a decoded map into a record, or raises `BadMessage` naming the value
that is wrong. Numbers are finite and in sane ranges, counts are non-negative and bounded,
strings and lists are bounded (an over-long string is cut, not refused). What only travels for
display (scope parameters, payloads) is reduced to plain JSON-like values. The model folds
nothing else, so nothing a process sends can raise there or when the numbers are drawn.

Its parts: the bounds and value checks (values.py), the records (records.py), the readers of call events
(calls.py) and of `stats` frames (stats_frame.py); here, `parse`, `hello` and the other messages' readers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dspy_top.protocol import (
    BUDGET,
    CALL,
    CALLS,
    COMPILE_END,
    COMPILE_START,
    ERROR,
    EVAL_END,
    EVAL_PROGRESS,
    EVAL_START,
    EXIT,
    PAYLOAD,
    PROTOCOL_VERSION,
    SNAPSHOT,
    STATS,
    Hello,
)
from dspy_top.schema.calls import call_map, read_call, read_calls
from dspy_top.schema.records import ErrorRecord, ExitRecord, PayloadRecord, Record, SnapshotRecord
from dspy_top.schema.stats_frame import alert, scope, stats
from dspy_top.schema.values import (
    MAX_HISTORY,
    MAX_LIST,
    MAX_PID,
    BadMessage,
    _count,
    _epoch,
    _flag,
    _kind,
    _list,
    _maybe,
    _name,
    _plain_map,
    _show,
    _text,
)


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
        raise BadMessage(
            f"process speaks dspy-top protocol version {_show(version)}; this viewer speaks {PROTOCOL_VERSION}"
        )
    pid = message.get("pid")
    if type(pid) is not int or not 0 < pid <= MAX_PID:
        raise BadMessage(f"malformed hello: pid is {_show(pid)}")
    return Hello(
        version=version,
        pid=pid,
        argv=[_text(a, "hello argv") for a in _list(message.get("argv"), "hello argv", MAX_LIST)],
        cwd=_text(message.get("cwd"), "hello cwd"),
        started_at=_epoch(message.get("started_at"), "hello started_at"),
        python=_name(message.get("python"), "hello python", ""),
        dspy=_name(message.get("dspy"), "hello dspy", ""),
        dspy_top=_name(message.get("dspy_top"), "hello dspy_top", ""),
        mechanism=_name(message.get("mechanism"), "hello mechanism", ""),
        history_capacity=_count(message.get("history_capacity"), "hello history_capacity"),
        recording=_maybe(message.get("recording"), _text, "hello recording") or None,
    )


def _snapshot(message: Mapping[str, Any]) -> SnapshotRecord:
    calls = _list(message.get("calls"), "snapshot calls", MAX_HISTORY)
    rows = []
    for number, call in enumerate(calls):
        try:
            rows.append(call_map(call))
        except BadMessage as exc:
            raise BadMessage(f"snapshot call {number}: {exc}") from None
    return SnapshotRecord(
        stats(message.get("stats") or {}, "snapshot stats"), tuple(rows), _count(message.get("seq"), "snapshot seq")
    )


def _exit(message: Mapping[str, Any]) -> ExitRecord:
    code = message.get("returncode", message.get("exit_code"))
    if code is not None and not (type(code) is int and -MAX_PID <= code <= MAX_PID):
        raise BadMessage(f"exit code is {_show(code)}")
    final = message.get("stats")
    return ExitRecord(
        at=_maybe(message.get("at"), _epoch, "exit at"),
        stats=stats(final, "exit stats") if final else None,
        code=code,
        detached=_flag(message.get("detached", False), "exit detached"),
        recording=_maybe(message.get("recording"), _text, "exit recording") or None,
    )


def _error(message: Mapping[str, Any]) -> ErrorRecord:
    return ErrorRecord(_text(message.get("reason"), "error reason") or "no reason given")


def _payload(message: Mapping[str, Any]) -> PayloadRecord:
    payload = message.get("payload")
    found = _flag(message.get("found"), "payload found")
    return PayloadRecord(
        req=_count(message.get("req"), "payload req"),
        id=_count(message.get("id"), "payload id"),
        found=found,
        payload=_plain_map(payload, "payload") if found and payload is not None else None,
        reason=_maybe(message.get("reason"), _text, "payload reason"),
    )


_READERS = {
    CALLS: read_calls,
    CALL: read_call,
    STATS: stats,
    SNAPSHOT: _snapshot,
    EXIT: _exit,
    ERROR: _error,
    BUDGET: alert,
    PAYLOAD: _payload,
    EVAL_START: scope,
    EVAL_PROGRESS: scope,
    EVAL_END: scope,
    COMPILE_START: scope,
    COMPILE_END: scope,
}
