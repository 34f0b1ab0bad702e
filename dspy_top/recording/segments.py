"""The writer's two deflate streams (messages, payloads), each cut into segments a reader decodes on its own.

A stream's records are packed as they come and compressed once per flush (or earlier, to bound
memory), continuing across flushes so a write every half second compresses as well as one large
block; a segment ends once `SEGMENT_BYTES` went into it, which bounds what a reader decodes to
reach anything in it (a payload, a moment). Each stream keeps the index's row for each of its
segments (index.py reads them back). The reader's side is decoder.py.

Who compresses. Python's zlib lets the GIL go around each call, and in a job the server thread
must then get it back: a switch the job pays for (instrumentation/gil_handoff.py), about eight
a tick in a busy job. So where it was built (hatch_build.py), `_deflate.c` compresses each
stream on a thread of its own that never takes the GIL: the records are handed to it as they
are packed (`feed`, no copy, no switch) and what came out is taken at the flush, which waits
(letting the GIL go) only if that thread has not finished yet; the bytes are the same deflate
stream. Without it (or with DSPY_TOP_NO_C=1), Python's zlib, as before.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import zlib
from collections.abc import Callable
from typing import Any

from dspy_top.recording import frames

try:  # built from _deflate.c when dspy-top is installed (hatch_build.py)
    if os.environ.get("DSPY_TOP_NO_C") == "1":
        raise ImportError("DSPY_TOP_NO_C=1")
    # By name: an import graph that knows no compiled module would take `from dspy_top.recording
    # import _deflate` for the package itself (tests/test_import_cycles.py).
    _deflate = importlib.import_module("dspy_top.recording._deflate")
except ImportError:  # no compiler or no zlib header where dspy-top was installed, or DSPY_TOP_NO_C=1
    _deflate = None

NATIVE = _deflate is not None
# A stream's segment ends once this much went into it: the reader decodes a whole segment to
# reach anything in it, so this bounds the cost of fetching one payload or seeking.
SEGMENT_BYTES = 1024 * 1024
# What a zlib call is reckoned to take, to say when the GIL it lets go is wanted back (a job's
# recording: instrumentation/gil_handoff.py): level 1 on DSPy's prompts took 4 to 5 ns a byte here.
ZLIB_SECONDS = 0.0002
ZLIB_SECONDS_PER_BYTE = 10e-9
# The compressing thread's wait reckoned from its own pace so far, this many times over (it
# shares a core with the server thread and the job's other work: its pace varies).
WAIT_MARGIN = 3
# Records are handed to the compressing thread once this much is pending (a quarter of it above
# level 1): cheap, a wake of that thread, and it keeps that thread busy as they come, so little is
# left to wait for at the flush; with Python's zlib, once this much (each call a switch: fewer,
# larger calls).
FEED_BYTES = 128 * 1024
PYTHON_EARLY_BYTES = 256 * 1024
# Fed and not yet compressed, past this the feeding waits for the compressing thread (a thread
# starved of CPU must not let memory grow).
BACKLOG_MOST = 16 * 1024 * 1024
_HELD = contextlib.nullcontext()


def held(expected: float = 0.0) -> contextlib.AbstractContextManager:
    """Where no one waits to give the GIL back (a writer outside a job): nothing to say."""
    return _HELD


class SegmentedStream:
    """One deflate stream of the file (messages or payloads), cut into independent segments."""

    def __init__(self, kind: int, level: int, native: bool = NATIVE) -> None:
        self.kind = kind
        self.level = level
        self.pending: list[bytes | memoryview] = []  # packed records not yet compressed
        self.pending_bytes = 0
        self.out: list[bytes] = []  # compressed, not yet framed (Python's zlib)
        self.out_bytes = 0
        # The compressing thread's stream (`_deflate`), kept from segment to segment; or None.
        self.native = _deflate.Deflater(level) if native and _deflate is not None else None
        # (A slower level gets its records sooner: less left to wait for at the flush.)
        self.early_bytes = (
            (FEED_BYTES if level <= 1 else FEED_BYTES // 4) if self.native is not None else PYTHON_EARLY_BYTES
        )
        self.fed = False  # records went in since the last `take`
        self.flush_asked: bool | None = None  # `ask_flush`'s `end_segment`, until the frame is made
        self.taken_crc: int | None = None  # zlib.crc32 of what `take` returned, when its thread reckoned it
        self.compressor: Any = None  # the segment's stream, once something went into it
        self.segment: int | None = None  # offset of the segment's first frame, once written
        self.segment_in = 0  # bytes that went into the current segment
        self.segments: list[list[Any]] = []  # the index's rows, one per segment
        # Around each zlib call (it lets the GIL go), with when it is reckoned to end.
        self.released: Callable[[float], contextlib.AbstractContextManager] = held

    def compress_pending(self) -> None:
        if not self.pending:
            return
        self.fed = True
        if self.native is not None:
            self._feed()
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

    def _feed(self) -> None:
        """The pending records to the compressing thread (it holds them, unchanged, until done)."""
        native = self.compressor = self.native
        native.feed(self.pending)
        self.segment_in += self.pending_bytes
        self.pending = []
        self.pending_bytes = 0
        if native.counts()[0] > BACKLOG_MOST:
            with self.released(self._wait_reckoned()):
                native.settle()

    def _wait_reckoned(self) -> float:
        """How long the compressing thread is reckoned to need for what it holds and a flush, on
        the high side: a job's thread asked to give the GIL back before the wait ends waits for
        nothing, up to a millisecond (gil_handoff.py); after it, the server thread only waits a
        little longer for its turn."""
        backlog, _, _, per_byte = self.native.counts()
        return ZLIB_SECONDS + WAIT_MARGIN * backlog * max(per_byte, ZLIB_SECONDS_PER_BYTE)

    def ask_flush(self, end_segment: bool) -> bool:
        """The next frame is to be made (ending the segment or not): with a compressing thread, it
        starts on the flush now. Returns `end_segment`."""
        self.compress_pending()
        self.flush_asked = end_segment
        if self.native is not None:
            self.native.flush(end_segment)
        return end_segment

    def take(self, end_segment: bool) -> bytes:
        """Everything compressed so far, decodable on its own from the segment's start."""
        self.compress_pending()
        self.fed = False
        self.flush_asked = None
        native = self.native
        if native is not None:
            data = native.take(end_segment, False)  # done already: no switch
            if data is None:
                with self.released(self._wait_reckoned()):
                    data = native.take(end_segment, True)
            self.taken_crc = native.crc()  # reckoned by the compressing thread
            return data
        self.taken_crc = None
        with self.released(ZLIB_SECONDS):
            self.out.append(self.compressor.flush(zlib.Z_FINISH if end_segment else zlib.Z_SYNC_FLUSH))
        data = b"".join(self.out)
        self.out = []
        self.out_bytes = 0
        return data

    def buffered(self) -> int:
        """At most what the file grows by once this is written (records not compressed yet counted raw)."""
        if self.native is not None:
            backlog, out, _, _ = self.native.counts()
            return backlog + out + self.pending_bytes
        return self.out_bytes + self.pending_bytes

    def waiting(self) -> bool:
        """Whether records went in that no frame holds yet."""
        return bool(self.pending) or self.fed

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
        data = self.take(end_segment)
        data = frames.frame(self.kind, frames.STREAM, meta, data, self.taken_crc)
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
