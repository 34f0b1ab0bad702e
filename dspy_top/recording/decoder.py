"""Reads one of a recording's two deflate streams (messages, payloads) back into its records, frame by frame.

The reader's side of segments.py: a segment decodes on its own from its first frame, so a reader
starts at a segment's start and keeps decoding while the frames are of that segment. A damaged
frame loses the rest of its segment (noted, with its offset), never what follows it.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Any

import msgpack

from dspy_top.recording import frames
from dspy_top.recording.frames import Broken, Frame, Torn
from dspy_top.recording.scan import FileView


class SegmentDecoder:
    """Turns one stream's frames (messages or payloads), in file order, back into its records."""

    def __init__(self, view: FileView, kind: int) -> None:
        self.view = view
        self.kind = kind
        self.segment: int | None = None
        self._inflater: Any = None
        self._unpacker: Any = None

    def feed(self, found: Frame) -> list[Any]:
        if found.kind != self.kind:
            return []
        segment = found.meta.get(frames.SEGMENT)
        if segment == found.offset:
            self.segment = segment
            self._inflater = zlib.decompressobj(-15)
            self._unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=frames.MAX_DATA * 4)
        elif segment != self.segment or self.segment is None:
            return []  # the start of its segment is before where reading began, or was lost
        try:
            data = self.view.data(found)
        except (Broken, Torn) as exc:
            return self._lost(found, str(exc) or "the frame is cut off")
        try:
            self._unpacker.feed(self._inflater.decompress(data))
            return list(self._unpacker)
        except Exception as exc:  # zlib.error, msgpack's unrelated error types
            return self._lost(found, f"undecodable data ({type(exc).__name__})")

    def _lost(self, found: Frame, reason: str) -> list[Any]:
        name = frames.KIND_NAMES.get(found.kind, "frame")
        self.view.note(found.offset, f"damaged {name} frame: {reason}; the rest of its segment is skipped")
        self.segment = None
        return []


def messages_of(records: list[Any]) -> Iterator[dict[str, Any]]:
    """The protocol messages among decoded records (anything else is skipped)."""
    for record in records:
        if isinstance(record, dict) and isinstance(record.get("t"), str):
            yield record
