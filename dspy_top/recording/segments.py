"""The writer's two deflate streams (messages, payloads), each cut into segments a reader decodes on its own.

A stream's records are packed as they come and compressed once per flush (or earlier, to bound
memory), continuing across flushes so a write every half second compresses as well as one large
block; a segment ends once `SEGMENT_BYTES` went into it, which bounds what a reader decodes to
reach anything in it (a payload, a moment). Each stream keeps the index's row for each of its
segments (index.py reads them back). The reader's side is decoder.py.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable
from typing import Any

from dspy_top.recording import frames

# A stream's segment ends once this much went into it: the reader decodes a whole segment to
# reach anything in it, so this bounds the cost of fetching one payload or seeking.
SEGMENT_BYTES = 1024 * 1024
# What a zlib call is reckoned to take, to say when the GIL it lets go is wanted back (a job's
# recording: instrumentation/gil_handoff.py): level 1 on DSPy's prompts took 4 to 5 ns a byte here.
ZLIB_SECONDS = 0.0002
ZLIB_SECONDS_PER_BYTE = 10e-9
_HELD = contextlib.nullcontext()


def held(expected: float = 0.0) -> contextlib.AbstractContextManager:
    """Where no one waits to give the GIL back (a writer outside a job): nothing to say."""
    return _HELD


class SegmentedStream:
    """One deflate stream of the file (messages or payloads), cut into independent segments."""

    def __init__(self, kind: int, level: int) -> None:
        self.kind = kind
        self.level = level
        self.pending: list[bytes | memoryview] = []  # packed records not yet compressed
        self.pending_bytes = 0
        self.out: list[bytes] = []  # compressed, not yet framed
        self.out_bytes = 0
        self.compressor: Any = None
        self.segment: int | None = None  # offset of the segment's first frame, once written
        self.segment_in = 0  # bytes that went into the current segment
        self.segments: list[list[Any]] = []  # the index's rows, one per segment
        # Around each zlib call (it lets the GIL go), with when it is reckoned to end.
        self.released: Callable[[float], contextlib.AbstractContextManager] = held

    def compress_pending(self) -> None:
        if not self.pending:
            return
        if self.compressor is None:
            self.compressor = zlib.compressobj(self.level, zlib.DEFLATED, -15)
        # One call into zlib for the lot: it releases the GIL while it works, and taking the GIL
        # back once per record would hand the job's threads a switch per call. A lone piece (a
        # batch of payloads packed in C) goes in as it is, without a copy made holding the GIL.
        pending = self.pending
        with self.released(ZLIB_SECONDS + ZLIB_SECONDS_PER_BYTE * self.pending_bytes):
            data = self.compressor.compress(pending[0] if len(pending) == 1 else b"".join(pending))
        self.out.append(data)
        self.out_bytes += len(data)
        self.segment_in += self.pending_bytes
        self.pending = []
        self.pending_bytes = 0

    def take(self, end_segment: bool) -> bytes:
        """Everything compressed so far, decodable on its own from the segment's start."""
        self.compress_pending()
        with self.released(ZLIB_SECONDS):
            self.out.append(self.compressor.flush(zlib.Z_FINISH if end_segment else zlib.Z_SYNC_FLUSH))
        data = b"".join(self.out)
        self.out = []
        self.out_bytes = 0
        return data

    def buffered(self) -> int:
        """At most what the file grows by once this is written (pending records counted raw)."""
        return self.out_bytes + self.pending_bytes

    def segment_full(self) -> bool:
        """Whether what went in, with what is pending, fills the segment: it ends with the next frame."""
        return self.segment_in + self.pending_bytes >= SEGMENT_BYTES

    def compressed_full(self) -> bool:
        """Whether what was compressed already fills the segment (a burst between two flushes)."""
        return self.segment_in >= SEGMENT_BYTES

    def frame(self, offset: int, end_segment: bool, meta: dict[str, Any], checkpoint_at: int | None) -> bytes:
        """The next frame of this stream, to be written at `offset`, its segment's index row kept."""
        first = self.segment is None
        if first:
            self.segment = offset
        meta[frames.SEGMENT] = self.segment
        meta[frames.CHECKPOINT_AT] = checkpoint_at
        data = frames.frame(self.kind, frames.STREAM, meta, self.take(end_segment))
        if self.kind == frames.MESSAGES:
            written = meta[frames.WRITTEN]
            if first:
                self.segments.append([offset, written, written, meta[frames.CALLS_BEFORE], 0, 0])
            row = self.segments[-1]
            row[2], row[4], row[5] = written, row[4] + meta[frames.CALLS], meta[frames.SEQ]
        else:
            ids = meta[frames.IDS]
            if first:
                self.segments.append([offset, None, None, 0])
            row = self.segments[-1]
            if ids is not None:
                row[1] = ids[0] if row[1] is None else min(row[1], ids[0])
                row[2] = ids[1] if row[2] is None else max(row[2], ids[1])
            row[3] += meta[frames.CALLS]
        if end_segment:
            self.compressor = None
            self.segment = None
            self.segment_in = 0
        return data
