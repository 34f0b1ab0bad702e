"""A recording's messages as things to tell, each at the moment it happened, and how they are told.

When each message happened is the file's own account (`reader.Written`): its time, kept
within the stretch of the writer's clock its frame was written in, and never before the
message before it. A `calls` batch is split call by call, each at the moment it finished, so
a replay shows calls as they came; neighbouring slices of a batch are told again as one
message, and what is told together spans at most CHUNK_SECONDS of recorded time.
Pure functions: no file, clock or sink here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dspy_top.protocol import CALLS
from dspy_top.recording.reader import Written, message_time

CHUNK_SECONDS = 0.5  # messages folded together in a catch-up span at most this much recorded time


@dataclass(frozen=True)
class Item:
    """One thing to tell, when it happened: a message, or calls `lo:hi` of a `calls` batch."""

    at: float
    message: dict[str, Any]
    lo: int = -1
    hi: int = -1


def timed_items(written: Written) -> list[Item]:
    """The messages of one frame, a `calls` batch call by call, each with when it happened."""
    out: list[Item] = []
    at, by = written.after, written.by
    for message in written.messages:
        if message.get("t") == CALLS:
            at = _calls(message, at, by, out)
            continue
        own = message_time(message)
        if own is not None:
            at = min(by, max(at, own))
        out.append(Item(at, message))
    return out


def _calls(message: dict[str, Any], at: float, by: float, out: list[Item]) -> float:
    """A `calls` batch's calls onto `out`, those finished at one moment together; the time after them."""
    rows = message.get("rows")
    fields = message.get("fields")
    if not isinstance(rows, list) or not isinstance(fields, (list, tuple)):
        out.append(Item(at, message))  # malformed: told as it is, for the collector to refuse
        return at
    try:
        start, latency = fields.index("start"), fields.index("latency")
    except ValueError:
        start = latency = -1
    width = max(start, latency)
    lo = 0
    for number, row in enumerate(rows):
        moved = at
        if start >= 0 and isinstance(row, (list, tuple)) and len(row) > width:
            begun, took = row[start], row[latency]
            if isinstance(begun, (int, float)) and isinstance(took, (int, float)):
                moved = min(by, max(at, float(begun) + float(took)))
        if moved != at and number > lo:
            out.append(Item(at, message, lo, number))
            lo = number
        at = moved
    if rows:
        out.append(Item(at, message, lo, len(rows)))
    return at


def fold_chunks(items: list[Item]) -> Iterator[list[Item]]:
    """Consecutive runs of items spanning at most CHUNK_SECONDS: each is folded at its last one's time."""
    chunk: list[Item] = []
    for item in items:
        if chunk and item.at - chunk[0].at > CHUNK_SECONDS:
            yield chunk
            chunk = []
        chunk.append(item)
    if chunk:
        yield chunk


def protocol_messages(items: list[Item]) -> list[dict[str, Any]]:
    """The protocol messages for `items`: a `calls` batch's neighbouring slices told as one."""
    out: list[dict[str, Any]] = []
    open_batch: dict[str, Any] | None = None
    lo = hi = 0
    for item in items:
        if item.lo < 0:
            if open_batch is not None:
                out.append(_slice(open_batch, lo, hi))
                open_batch = None
            out.append(item.message)
        elif open_batch is item.message and item.lo == hi:
            hi = item.hi
        else:
            if open_batch is not None:
                out.append(_slice(open_batch, lo, hi))
            open_batch, lo, hi = item.message, item.lo, item.hi
    if open_batch is not None:
        out.append(_slice(open_batch, lo, hi))
    return out


def _slice(message: dict[str, Any], lo: int, hi: int) -> dict[str, Any]:
    rows = message["rows"]
    if lo == 0 and hi == len(rows):
        return message
    return {**message, "rows": rows[lo:hi]}
