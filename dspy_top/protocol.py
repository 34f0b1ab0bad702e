"""The wire between an instrumented process and its viewers: msgpack frames, versioned.

Imports only msgpack and the standard library. The schema of every message is in
docs/protocol.md; this module owns framing, limits and the version check.
"""

from __future__ import annotations

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
    "seq", "id", "start", "latency", "path", "module_class", "model", "response_model",
    "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "cost_usd",
    "cost_saved_usd", "cache_hit", "retries", "error", "error_message", "scopes", "stream", "usage_known",
)


def call_dicts(fields: Any, rows: Any) -> list[dict[str, Any]]:
    """The `call` messages that rows with these columns (a `calls` batch) stand for."""
    fields = list(fields)
    return [{"t": CALL, **dict(zip(fields, row))} for row in rows]


class ProtocolError(Exception):
    """The peer sent something this side cannot accept; the connection must close."""


def encode(message: dict[str, Any]) -> bytes:
    """One framed message, ready to send."""
    body = msgpack.packb(message, use_bin_type=True, default=_fallback)
    if len(body) > MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes exceeds the {MAX_FRAME}-byte limit")
    return HEADER.pack(len(body)) + body


def _fallback(value: Any) -> Any:
    # Anything msgpack cannot carry natively travels as its text, never as an error.
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


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
                body = view[position + HEADER.size:end]
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
    """What a process says about itself when a viewer connects."""

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

    @classmethod
    def from_message(cls, message: dict[str, Any]) -> "Hello":
        """Checked like every other message (dspy_top/schema.py); raises ProtocolError."""
        from dspy_top import schema  # it imports this module

        return schema.hello(message)


# The counters kept for the whole process, for each module path and each model.
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
