"""The server's outgoing stream: each frame encoded once, read by every viewer from its own position.

A frame stays until every reader has taken it, or until the stream holds more than its
byte limit: then the oldest go, and a reader that had not taken them yet loses their call
events (counted), is handed their rare events (scope and budget events) apart, and skips
stale stats. So a stalled viewer costs the others nothing: nothing is copied per viewer and
nobody waits for it. A reader is anything with a `position` (the next frame it takes): the
viewers today, and another consumer of the same stream (a recording) can be one more.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Protocol

# What a frame is, for a reader that falls behind.
CALLS = 0  # call, tool or progress events: dropped and counted (`events` of them)
KEPT = 1  # scope and budget events: never dropped
STATS = 2  # a stats frame: only the newest matters; per-reader fields are added when it is taken


class Frame:
    """One encoded frame of the stream."""

    __slots__ = ("data", "kind", "events")

    def __init__(self, data: bytes, kind: int, events: int) -> None:
        self.data = data
        self.kind = kind
        self.events = events


class Reader(Protocol):
    position: int

    def missed(self, frame: Frame) -> None:
        """A frame this reader had not taken left the stream."""


class FrameStream:
    """Encoded frames in order, with absolute positions; bounded in bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.frames: deque[Frame] = deque()
        self.first = 0  # position of frames[0]
        self.size = 0  # bytes held
        self.newest_stats = -1  # position of the newest stats frame

    @property
    def end(self) -> int:
        """The position the next frame will have."""
        return self.first + len(self.frames)

    def append(self, data: bytes, kind: int, events: int = 0) -> int:
        position = self.end
        self.frames.append(Frame(data, kind, events))
        self.size += len(data)
        if kind == STATS:
            self.newest_stats = position
        return position

    def at(self, position: int) -> Frame:
        return self.frames[position - self.first]

    def trim(self, readers: Iterable[Reader], keep_from: int | None = None) -> None:
        """Drop frames every reader has taken (and none before `keep_from`); past the byte limit,
        the oldest, telling each reader that had not taken one yet."""
        readers = list(readers)
        oldest = min(
            [reader.position for reader in readers] + ([keep_from] if keep_from is not None else []), default=self.end
        )
        frames = self.frames
        while frames and (self.first < oldest or self.size > self.limit):
            frame = frames.popleft()
            self.size -= len(frame.data)
            if self.first >= oldest:
                for reader in readers:
                    if reader.position == self.first:
                        reader.missed(frame)
                        reader.position += 1
            self.first += 1
