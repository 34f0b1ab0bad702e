"""The wire between an instrumented process and its viewers: msgpack frames, versioned.

Imports only msgpack and the standard library. The schema of every message is in
docs/protocol.md; this module owns framing, limits and the version check.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

import msgpack

PROTOCOL_VERSION = 2  # 2: call events travel batched, as `calls`

# A frame is a 4-byte big-endian length, then that many bytes of one msgpack map.
HEADER = struct.Struct(">I")
# Generous for one call's full payload (long prompts), small enough that a
# garbage length cannot make a reader allocate gigabytes.
MAX_FRAME = 8 * 1024 * 1024

# Message types, server to viewer.
HELLO = "hello"
SNAPSHOT = "snapshot"
STATS = "stats"
CALL = "call"
CALLS = "calls"  # a batch of call events, one row each (see CALL_FIELDS)
EVAL_START = "eval_start"
EVAL_PROGRESS = "eval_progress"
EVAL_END = "eval_end"
COMPILE_START = "compile_start"
COMPILE_END = "compile_end"
TOOL = "tool"
BUDGET = "budget"
PAYLOAD = "payload"
ERROR = "error"
EXIT = "exit"
# Message types, viewer to server.
GET_PAYLOAD = "get_payload"
STOP = "stop"


# The columns of a `calls` batch, in the order a process sends them (the message names
# them too, so a reader maps by name and tolerates added columns).
CALL_FIELDS = (
    "seq",
    "id",
    "start",
    "latency",
    "path",
    "module_class",
    "model",
    "response_model",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_saved_usd",
    "cache_hit",
    "retries",
    "error",
    "error_message",
    "scopes",
    "stream",
    "usage_known",
)


def call_dicts(fields: Any, rows: Any) -> list[dict[str, Any]]:
    """The `call` messages that rows with these columns (a `calls` batch) stand for."""
    fields = list(fields)
    return [{"t": CALL, **dict(zip(fields, row))} for row in rows]


class ProtocolError(Exception):
    """The peer sent something this side cannot accept; the connection must close."""


def encode(message: dict[str, Any]) -> bytes:
    """One framed message, ready to send.

    Any text travels: a lone surrogate (an LM's broken JSON escape) or an undecodable byte of a
    file name (Python's surrogateescape) is written as a visible escape instead of raising.
    A message that is too large, or cannot be encoded at all, raises ProtocolError: the
    sender drops that one message and goes on.
    """
    try:
        body = msgpack.packb(message, use_bin_type=True, default=_fallback)
    except Exception:
        # The slow path, only for what the fast one refused: every value made plain first.
        try:
            body = msgpack.packb(plain(message), use_bin_type=True)
        except Exception as exc:
            raise ProtocolError(f"unencodable message ({type(exc).__name__})") from None
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return HEADER.pack(len(body)) + body


def encode_with(frame: bytes, extra: dict[str, Any]) -> bytes:
    """`frame` (an encoded map without these keys) with `extra`'s keys added.

    Lets a frame that differs per viewer in one field (its `dropped_viewer`) be encoded once.
    """
    body = memoryview(frame)[HEADER.size :]
    first = body[0]
    if 0x80 <= first <= 0x8F:
        count, skip = first & 0x0F, 1
    elif first == 0xDE:
        count, skip = struct.unpack_from(">H", body, 1)[0], 3
    elif first == 0xDF:
        count, skip = struct.unpack_from(">I", body, 1)[0], 5
    else:
        raise ProtocolError("not an encoded map")
    count += len(extra)
    if count <= 0x0F:
        head = bytes((0x80 | count,))
    elif count <= 0xFFFF:
        head = b"\xde" + struct.pack(">H", count)
    else:
        head = b"\xdf" + struct.pack(">I", count)
    tail = b"".join(msgpack.packb(key) + msgpack.packb(plain(value)) for key, value in extra.items())
    size = len(head) + len(body) - skip + len(tail)
    if size > MAX_FRAME:
        raise ProtocolError(f"frame of {size} bytes exceeds the {MAX_FRAME}-byte limit")
    return b"".join((HEADER.pack(size), head, body[skip:], tail))


def _fallback(value: Any) -> Any:
    # Anything msgpack cannot carry natively travels as its text, never as an error.
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


_SURROGATE = re.compile("[\ud800-\udfff]")
_INT_RANGE = (-(1 << 63), (1 << 64) - 1)
_MAX_DEPTH = 64


def plain(value: Any, depth: int = 0) -> Any:
    """A copy of `value` that msgpack can always encode: text made valid UTF-8, integers out of
    msgpack's range as text, containers as lists and maps, anything else as its repr."""
    kind = type(value)
    if kind is str:
        return text(value)
    if value is None or kind is bool or kind is float or kind is bytes:
        return value
    if isinstance(value, int):
        return int(value) if _INT_RANGE[0] <= value <= _INT_RANGE[1] else str(value)
    if isinstance(value, float):
        return float(value)
    if depth >= _MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        return {_plain_key(key): plain(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(item, depth + 1) for item in value]
    if isinstance(value, str):
        return text(str.__str__(value))
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return text(_safe_repr(value))


def _plain_key(key: Any) -> Any:
    if key is None or type(key) in (bool, float):
        return key
    if type(key) is int and _INT_RANGE[0] <= key <= _INT_RANGE[1]:
        return key
    return text(key) if type(key) is str else plain(str(key) if isinstance(key, (str, int)) else _safe_repr(key))


def _safe_repr(value: Any) -> str:
    try:
        return repr(value)
    except Exception:
        return f"<{type(value).__name__}>"


def text(value: str) -> str:
    """`value` as valid UTF-8 text: each surrogate becomes a visible escape (`\\xe9` for an
    undecodable byte kept by surrogateescape, `\\ud800` for a lone surrogate)."""
    try:
        value.encode("utf-8")
        return value
    except UnicodeEncodeError:
        return _SURROGATE.sub(_escape_surrogate, value)


def _escape_surrogate(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"


def decode_body(body: bytes | memoryview) -> dict[str, Any]:
    """Decode one frame's body into a message map, or raise ProtocolError."""
    try:
        message = msgpack.unpackb(body, raw=False, strict_map_key=False)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError(f"undecodable frame ({type(exc).__name__})") from None
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolError("frame is not a typed message map")
    return message


class FrameReader:
    """Incremental decoder: feed bytes as they arrive, take whole messages out.

    `feed` returns every message the buffer now completes. A bad frame after good ones:
    the good ones are returned first and the ProtocolError is raised on the next call.
    """

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buffer = bytearray()
        self._max_frame = max_frame
        self._error: ProtocolError | None = None

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        if self._error is not None:
            raise self._error
        if data:
            self._buffer += data
        buffer = self._buffer
        size = len(buffer)
        position = 0
        messages: list[dict[str, Any]] = []
        # Parse in place by offset and compact once: slicing and deleting per frame is what
        # made this the viewer's bottleneck under heavy event rates.
        with memoryview(buffer) as view:
            while size - position >= HEADER.size:
                (length,) = HEADER.unpack_from(buffer, position)
                if length > self._max_frame:
                    self._error = ProtocolError(f"frame length {length} exceeds the {self._max_frame}-byte limit")
                    break
                end = position + HEADER.size + length
                if end > size:
                    break
                body = view[position + HEADER.size : end]
                try:
                    messages.append(decode_body(body))
                except ProtocolError as exc:
                    self._error = exc.with_traceback(None)
                    break
                finally:
                    body.release()  # an error's traceback must not keep the buffer exported
                position = end
        if position:
            del buffer[:position]
        if self._error is not None and not messages:
            raise self._error
        return messages


@dataclass(frozen=True)
class Hello:
    """What a process says about itself when a viewer connects (checked by `dspy_top.schema.hello`)."""

    version: int
    pid: int
    argv: list[str]
    cwd: str
    started_at: float
    python: str
    dspy: str
    dspy_top: str
    mechanism: str
    history_capacity: int
    recording: str | None = None  # the file it records to (once it has opened it)


# The counters kept for the whole process, each module path, each model and each scope: the one list of
# their names (the job's Counters, the schema's CountersRecord and the viewer's JSON are made from it).
# Every one is exact: they are updated on the job's thread, never dropped.
COUNTER_FIELDS = (
    "calls",  # DSPy LM calls finished, ok or failed, cache hits included, retries not
    "errors",  # calls that raised
    "retries",  # extra provider attempts made inside calls
    "cache_hits",  # calls answered from DSPy's memory or disk cache
    "prompt_tokens",  # billed: cache hits add nothing
    "completion_tokens",
    "cached_tokens",  # provider-side prompt cache, part of prompt_tokens
    "reasoning_tokens",  # part of completion_tokens
    "cost_usd",  # billed cost of priced calls
    "unpriced_calls",  # billed calls whose cost is unknown
    "unmetered_calls",  # calls whose token usage DSPy did not report (their tokens are not counted)
    "cost_saved_usd",  # what DSPy-cache hits would have cost
    "latency_s",  # summed wall time of finished calls
    "in_flight",  # calls started and not finished
)
USD_FIELDS = ("cost_usd", "cost_saved_usd")  # dollars
SECONDS_FIELDS = ("latency_s",)
COUNT_FIELDS = tuple(name for name in COUNTER_FIELDS if name not in USD_FIELDS + SECONDS_FIELDS)  # integers
