"""Where everything is in a recording: its segments and checkpoints, from the footer or a walk.

A closed recording ends with an index frame (the footer); one whose writer was killed, or
is still writing, has none, and the same index is built by walking its frame headers
(never their data), extended as the file grows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dspy_top.recording import frames
from dspy_top.recording.checked import moment
from dspy_top.recording.frames import Broken, Torn
from dspy_top.recording.scan import FileView


@dataclass
class MessageSegment:
    """A run of message frames that decodes on its own, from `offset`."""

    offset: int
    t0: float  # when its first frame was written (the writer's clock)
    t1: float  # when its last frame was written
    calls_before: int  # call events in the file before it
    calls: int
    seq: int  # the highest event sequence number in it


@dataclass
class PayloadSegment:
    """A run of payload frames that decodes on its own, from `offset`."""

    offset: int
    first_id: int | None
    last_id: int | None
    count: int

    def may_hold(self, call_id: int) -> bool:
        return self.first_id is not None and self.first_id <= call_id <= self.last_id


@dataclass(frozen=True)
class CheckpointRef:
    offset: int
    at: float
    calls: int
    seq: int


@dataclass
class Index:
    messages: list[MessageSegment] = field(default_factory=list)
    payloads: list[PayloadSegment] = field(default_factory=list)
    checkpoints: list[CheckpointRef] = field(default_factory=list)
    complete: bool = False  # read from the footer of a closed recording
    failed: str | None = None  # the writer's own account of why it stopped writing, if it did
    walked_to: int = 0  # a walked index covers the frames before this offset

    def checkpoint_before(self, at: float) -> CheckpointRef | None:
        best = None
        for ref in self.checkpoints:
            if ref.at <= at:
                best = ref
        return best


def from_footer(view: FileView, size: int) -> Index | None:
    """The index a closed recording stores at its end; None if it has none (or it is damaged)."""
    if size < frames.TRAILER.size:
        return None
    magic, offset = frames.TRAILER.unpack(view.read(size - frames.TRAILER.size, frames.TRAILER.size))
    if magic != frames.TRAILER_MAGIC or offset >= size - frames.TRAILER.size:
        return None
    try:
        found = view.frame_at(offset, size)
        if found.kind != frames.INDEX:
            return None
        stored = frames.unpack_standalone(found, view.data(found))
        return Index(
            messages=[MessageSegment(*row) for row in stored["messages"]],
            payloads=[PayloadSegment(*row) for row in stored["payloads"]],
            checkpoints=[CheckpointRef(*row) for row in stored["checkpoints"]],
            complete=True,
            failed=stored.get("failed"),
            walked_to=offset,
        )
    except (Torn, Broken, KeyError, TypeError, ValueError):
        view.note(offset, "the footer index is damaged; the file is read without it")
        return None


class IndexWalker:
    """Builds an index from frame headers, and extends it as a live file grows."""

    def __init__(self, view: FileView, start: int) -> None:
        self.view = view
        self.index = Index(walked_to=start)
        self.ended = False  # reached the footer: nothing more will be written

    def extend(self, quiet_tail: bool) -> Index:
        index = self.index
        if self.ended:
            return index
        size = self.view.size()
        for found in self.view.walk(index.walked_to, size, quiet_tail=quiet_tail):
            self.add(found)
            index.walked_to = found.end
            if found.kind == frames.INDEX:
                self.ended = True
                break
        return index

    def add(self, found: frames.Frame) -> None:
        meta: dict[str, Any] = found.meta
        index = self.index
        if found.kind == frames.MESSAGES:
            written = moment(meta.get(frames.WRITTEN), 0.0)
            if meta.get(frames.SEGMENT) == found.offset:
                index.messages.append(
                    MessageSegment(found.offset, written, written, int(meta.get(frames.CALLS_BEFORE) or 0), 0, 0)
                )
            elif not index.messages or index.messages[-1].offset != meta.get(frames.SEGMENT):
                return  # a segment whose first frame was lost to damage: it cannot be decoded
            segment = index.messages[-1]
            segment.t1 = written or segment.t1
            segment.calls += int(meta.get(frames.CALLS) or 0)
            segment.seq = max(segment.seq, int(meta.get(frames.SEQ) or 0))
        elif found.kind == frames.PAYLOADS:
            if meta.get(frames.SEGMENT) == found.offset:
                index.payloads.append(PayloadSegment(found.offset, None, None, 0))
            elif not index.payloads or index.payloads[-1].offset != meta.get(frames.SEGMENT):
                return
            segment = index.payloads[-1]
            ids = meta.get(frames.IDS)
            if ids:
                low, high = int(ids[0]), int(ids[1])
                segment.first_id = low if segment.first_id is None else min(segment.first_id, low)
                segment.last_id = high if segment.last_id is None else max(segment.last_id, high)
            segment.count += int(meta.get(frames.CALLS) or 0)
        elif found.kind == frames.CHECKPOINT:
            index.checkpoints.append(
                CheckpointRef(
                    found.offset,
                    float(meta.get(frames.WRITTEN) or 0.0),
                    int(meta.get(frames.CALLS) or 0),
                    int(meta.get(frames.SEQ) or 0),
                )
            )
