"""The schema's bounds and its checks of one value (a count, a time, dollars, a name, a list, a map).

Each check returns the value, made plain, or raises `BadMessage` naming the value and why; the message readers
(calls.py, stats_frame.py, the package's `parse`) are built from them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from dspy_top.protocol import ProtocolError

# Sane ranges: anything outside them is not a real process's figure.
MAX_COUNT = 2**53  # calls, tokens, ids: exact in a float too, far beyond any real run
MAX_USD = 1e12
MAX_SECONDS = 1e10  # a duration (latency, summed wall time)
MAX_EPOCH = 1e11  # epoch seconds (the year 5138)
MAX_SCORE = 1e15  # a metric's value or sum, either sign
MAX_PID = 2**31 - 1
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
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
        return {
            (_cut(key, MAX_NAME) if type(key) is str else _show(key)): _plain(item, depth + 1)
            for key, item in value.items()
        }
    return _show(value)  # bytes, msgpack extension types
