"""`RecordingWriter`: appends what a process serves to its recording file, from the server thread.

Cheap per call: a call event costs a tuple append, a payload one msgpack encode into a
buffer. Compression runs once per flush over everything buffered (zlib releases the GIL
while it works), into two deflate streams (messages, payloads) that continue across
flushes, so a write every half second compresses as well as one large block. Standard library
and msgpack only: it runs inside the user's job. Not thread-safe: one thread calls it.

Its parts: the two streams and their segments (segments.py), when a checkpoint is stored
(checkpoints.py), which stats are stored and what stops at the size caps (caps.py), and the
bytes of each frame (frames.py).
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import functools
import os
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgpack

from dspy_top.protocol import CALL, CALL_FIELDS, CALLS, STATS
from dspy_top.recording import frames, segments
from dspy_top.recording.caps import SizeCaps, StoredStats
from dspy_top.recording.checkpoints import CheckpointSchedule
from dspy_top.recording.segments import SegmentedStream
from dspy_top.recording.state import RecordingState

DEFAULT_CAP = 1024**3  # bytes per recording; past it payloads stop (see `cap_bytes`)
# What is added is on disk within FLUSH_EVERY: flush() (called on the server's 0.25 s tick) writes
# once the oldest record not yet written waited WRITE_AFTER, so at the tick after the one that
# added it: a busy job's every other tick, and a slow job's call goes out with what the next tick
# adds (its progress, its stats) in one frame, not two (a frame's header and meta are most of a
# slow job's bytes). A message added FLUSH_EVERY
# after the last write flushes at once, whoever forgot flush(). Fewer frames, fewer bytes.
FLUSH_EVERY = 0.5
WRITE_AFTER = 0.2
MAX_PAYLOAD = 16 * 1024 * 1024  # a payload packing larger than this is not stored (counted)
# deflate levels: payloads are most of the bytes, and level 1 already stores DSPy payloads at a
# small share of their text (benchmarks/README.md) in a third to two thirds of level 6's time.
MESSAGES_LEVEL = 6
PAYLOADS_LEVEL = 1
CALLS_PER_MESSAGE = 500  # rows per stored `calls` batch, as on the wire


def _fallback(value: Any) -> Any:
    # As on the wire: what msgpack cannot carry is stored as its text, never an error.
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return repr(value)


def _guarded(method: Callable[..., None]) -> Callable[..., None]:
    """The job comes first: a surprise in here stops the recording (`failed` says why), never
    the server thread that called it."""

    @functools.wraps(method)
    def guarded(self: RecordingWriter, *args: Any, **kwargs: Any) -> None:
        try:
            method(self, *args, **kwargs)
        except Exception as exc:
            if self.failed is None:
                self.failed = f"recording {self.path} stopped by an internal error ({type(exc).__name__}: {exc})"

    return guarded


class RecordingWriter:
    """One process's recording: create it, feed it what the server serves, flush on a timer, close."""

    def __init__(self, path: Path, fd: int, hello: dict[str, Any], cap_bytes: int, clock: Callable[[], float]) -> None:
        self.path = path
        self._fd: int | None = fd
        self.cap_bytes = cap_bytes
        self._clock = clock
        self.state = RecordingState()
        self.offset = 0  # bytes written
        self.failed: str | None = None  # why writing stopped (the disk is full, ...), if it did
        self.closed = False
        self._packer = msgpack.Packer(use_bin_type=True, default=_fallback)
        self._messages = SegmentedStream(frames.MESSAGES, MESSAGES_LEVEL)
        self._payloads = SegmentedStream(frames.PAYLOADS, PAYLOADS_LEVEL)
        self._released = segments.held  # see `gil_released`
        self._frame_calls = 0
        self._ids: list[int] = []  # call ids of the buffered payloads (min, max go in the meta)
        self._waiting_since: float | None = None  # when the oldest record not yet written was added
        self._checkpoints = CheckpointSchedule(clock())
        self._segment_calls = 0  # call events before the current message segment
        self._caps = SizeCaps(cap_bytes, self.add, lambda: self.offset)
        self._stats = StoredStats(self._packer.pack)
        self._write(
            frames.file_header()
            + frames.frame(
                frames.HEADER,
                frames.PLAIN,
                {},
                msgpack.packb(
                    {
                        "format": [frames.FORMAT_MAJOR, frames.FORMAT_MINOR],
                        "created_at": clock(),
                        "hello": hello,
                        "cap_bytes": cap_bytes,
                        "segment_bytes": segments.SEGMENT_BYTES,
                        "flush_every": FLUSH_EVERY,
                    },
                    use_bin_type=True,
                    default=_fallback,
                ),
            )
        )

    @classmethod
    def create(
        cls,
        path: str | os.PathLike,
        hello: dict[str, Any],
        cap_bytes: int = DEFAULT_CAP,
        overwrite: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> RecordingWriter:
        """A new recording at `path`, created 0600 and locked for as long as it is written.

        The directory must exist (see runs.runs_dir for the default one, made 0700). Raises
        OSError when the file cannot be created (or exists and `overwrite` is false)."""
        path = Path(path)
        if overwrite and path.is_file() and not path.is_symlink():
            path.unlink()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            # Held until close: retention never removes a recording in use, and readers can
            # tell a file still being written from one whose writer died.
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return cls(path, fd, hello, cap_bytes, clock)
        except BaseException:
            os.close(fd)
            raise

    def gil_released(self, released: Callable[[float], contextlib.AbstractContextManager]) -> None:
        """Wrap each call that lets the GIL go (zlib, the writes) in `released(when it is reckoned
        to end)`: a job's server thread says so (instrumentation/gil_handoff.py)."""
        self._released = self._messages.released = self._payloads.released = released

    # --- feeding ----------------------------------------------------------------------

    @_guarded
    def add(self, message: dict[str, Any], packed: bytes | None = None) -> None:
        """Append one protocol message (stats, snapshot, eval_*, compile_*, tool, budget, calls, exit...);
        `packed`: its msgpack bytes, when the caller packed it already (a job's call rows, in C)."""
        if self._fd is None or self.failed is not None:
            return
        kind = message.get("t")
        if self._caps.events_stopped and not self._caps.keep_past_hard_cap(message, self._clock):
            if kind == CALLS:
                self.state.calls_dropped += len(message.get("rows") or ())
            elif kind == CALL:
                self.state.calls_dropped += 1
            return
        try:
            if kind == STATS and not self._stats.keep(message, self._clock()):
                return
            if packed is None:
                packed = self._packer.pack(message)
            self.state.apply(message)
        except Exception:  # a value msgpack refuses even through the fallback, a malformed message
            self.state.notes.append({"event": "unstorable_message", "type": str(kind)})
            return
        if kind == CALLS:
            count = len(message.get("rows") or ())
            self._frame_calls += count
            self._stats.calls_since += count
        elif kind == CALL:
            self._frame_calls += 1
            self._stats.calls_since += 1
        now = self._clock()
        stream = self._messages
        stream.pending.append(packed)
        stream.pending_bytes += len(packed)
        self._checkpoints.bytes += len(packed)
        if self._waiting_since is None:
            self._waiting_since = now
        if stream.pending_bytes >= stream.early_bytes:
            self._compress_early(stream)
        elif now - self._waiting_since >= FLUSH_EVERY:
            # The server flushes on its tick; this is the net under it (a busy or late tick).
            self.flush(force=True)

    def add_calls(self, rows: list[tuple] | list[list], fields: Iterable[str] | None = None) -> None:
        """Call events as the recorder queues them: rows in protocol.CALL_FIELDS order (or `fields`)."""
        if rows:
            self.add({"t": CALLS, "fields": list(fields or CALL_FIELDS), "rows": rows})

    def add_events(self, events: Iterable[dict[str, Any] | tuple]) -> None:
        """What `Recorder.drain()` returns: call rows (tuples) are stored as `calls` batches, in order."""
        rows: list[tuple] = []
        for event in events:
            if type(event) is tuple:
                rows.append(event)
                if len(rows) >= CALLS_PER_MESSAGE:
                    self.add_calls(rows)
                    rows = []
                continue
            if rows:
                self.add_calls(rows)
                rows = []
            self.add(event)
        if rows:
            self.add_calls(rows)

    def add_payload(self, call_id: int, payload: dict[str, Any]) -> None:
        """Store one call's payload (as payload.materialize builds it), until the size cap."""
        self.add_payloads(((call_id, payload),))

    @_guarded
    def add_payloads(self, payloads: Iterable[tuple[int, dict[str, Any] | bytes]]) -> None:
        """Store (call id, payload) pairs: one tick's worth in one call costs less per payload. A
        payload given as bytes is `[call id, payload]` packed already (instrumentation/payload_pack.py)."""
        if self._fd is None or self.failed is not None:
            return
        state, stream, ids, pack, caps = self.state, self._payloads, self._ids, self._packer.pack, self._caps
        cap = self.cap_bytes - self.offset - self._messages.buffered()
        for call_id, payload in payloads:
            if not caps.payloads_stopped and stream.buffered() >= cap:
                # What waits for the tick's flush counts: a burst must not run past the cap
                # because the file's size is only known after the write.
                caps.stop_payloads(self._clock(), self.offset + self._messages.buffered() + stream.buffered())
            if caps.payloads_stopped:
                state.payloads_dropped += 1
                continue
            try:
                packed = payload if type(payload) is bytes else pack([call_id, payload])
            except Exception:  # a value msgpack refuses even through the fallback
                state.payloads_dropped += 1
                continue
            size = len(packed)
            if size > MAX_PAYLOAD:
                state.payloads_dropped += 1
                continue
            state.payloads += 1
            if self._waiting_since is None:
                self._waiting_since = self._clock()
            ids.append(call_id)
            stream.pending.append(packed)
            stream.pending_bytes += size
            if stream.pending_bytes >= stream.early_bytes:
                self._compress_early(stream)
                ids = self._ids  # a flush started a new list
                cap = self.cap_bytes - self.offset - self._messages.buffered()

    @_guarded
    def add_packed_payloads(self, call_ids: list[int], data: bytes | bytearray, ends: list[int]) -> None:
        """Payloads packed already, one after another in `data` (`[call id, payload]` each, as
        `add_payloads` packs them, the last byte of the i-th at ends[i]; see
        instrumentation/payload_pack.py). A batch under the size cap is taken whole, cut where
        the stream's `early_bytes` are reached; one that may not fit goes through `add_payloads`, one by one."""
        if self._fd is None or self.failed is not None or not call_ids:
            return
        state, stream, caps = self.state, self._payloads, self._caps
        size = ends[-1]
        cap = self.cap_bytes - self.offset - self._messages.buffered()
        if caps.payloads_stopped or stream.buffered() + size >= cap:
            starts = [0, *ends[:-1]]
            self.add_payloads((call_id, bytes(data[start:end])) for call_id, start, end in zip(call_ids, starts, ends))
            return
        if self._waiting_since is None:
            self._waiting_since = self._clock()
        view = memoryview(data)
        at = offset = 0
        count = len(call_ids)
        while at < count:
            # the payloads up to the first that brings what is pending to the stream's `early_bytes`
            stop = min(bisect.bisect_left(ends, offset + stream.early_bytes - stream.pending_bytes, at) + 1, count)
            end = ends[stop - 1]
            self._ids.extend(call_ids[at:stop])
            stream.pending.append(view[offset:end])
            stream.pending_bytes += end - offset
            state.payloads += stop - at
            if stream.pending_bytes >= stream.early_bytes:
                self._compress_early(stream)
            at, offset = stop, end

    def count_missing_payloads(self, count: int) -> None:
        """Payloads that could not be stored because the process no longer had them (counted in
        `payloads_dropped`, like those past the cap)."""
        if count > 0 and self._fd is not None:
            self.state.payloads_dropped += count

    def _compress_early(self, stream: SegmentedStream) -> None:
        stream.compress_pending()  # bounds memory: only compressed bytes wait for the flush
        if stream.compressed_full():
            self.flush(force=True)

    # --- writing ----------------------------------------------------------------------

    @_guarded
    def flush(self, force: bool = False) -> None:
        """Write what is buffered, once the oldest of it waited WRITE_AFTER (or now, with `force`).

        Call it on the server's tick (every 0.25 s): nothing then waits more than FLUSH_EVERY."""
        if self._fd is None or self.failed is not None:
            return
        waiting = self._waiting_since
        if force or (waiting is not None and self._clock() - waiting >= WRITE_AFTER):
            self._flush(final=False)

    def _flush(self, final: bool) -> None:
        now = self._clock()
        checkpoints = self._checkpoints
        checkpoint = final or checkpoints.due(self.state, now)
        out = bytearray()
        payloads, messages = self._payloads, self._messages
        # Both streams' flushes asked for first: their compressing threads (segments.py) work at once.
        framed = payloads.waiting() or (final and payloads.compressor is not None)
        payloads_end = framed and payloads.ask_flush(final or payloads.segment_full())
        if messages.waiting() or (checkpoint and messages.compressor is not None):
            messages.ask_flush(checkpoint or messages.segment_full())
        if framed:
            meta = {frames.IDS: [min(self._ids), max(self._ids)] if self._ids else None, frames.CALLS: len(self._ids)}
            out += payloads.frame(self.offset + len(out), payloads_end, meta, checkpoints.latest)
            self._ids = []
        if messages.flush_asked is not None:
            end = messages.flush_asked
            meta = {frames.WRITTEN: now, frames.CALLS: self._frame_calls, frames.SEQ: self.state.seq}
            if messages.segment is None:
                meta[frames.CALLS_BEFORE] = self._segment_calls
            self._segment_calls += self._frame_calls
            out += messages.frame(self.offset + len(out), end, meta, checkpoints.latest)
            self._frame_calls = 0
        if checkpoint and self.state.stats is not None:
            with self._released(segments.ZLIB_SECONDS):
                out += checkpoints.frame(self.state, self.offset + len(out), now, MESSAGES_LEVEL, _fallback)
        if out:
            self._write(bytes(out))
        self._waiting_since = None
        self._caps.check(now)

    def _write(self, data: bytes) -> None:
        if self._fd is None or self.failed is not None:
            return
        view = memoryview(data)
        try:
            while view:
                with self._released(0.0):
                    written = os.write(self._fd, view)
                self.offset += written
                view = view[written:]
        except OSError as exc:
            # The disk is full, the file too large, ...: the recording stops here, readable up to
            # its last whole frame; the job goes on.
            self.failed = f"writing {self.path} failed: {exc.strerror or exc}"

    # --- the end ----------------------------------------------------------------------

    def close(self, exit_message: dict[str, Any] | None = None) -> None:
        """Store the `exit` message (if given), the final checkpoint and the index; release the file."""
        if self._fd is None or self.closed:
            return
        try:
            if exit_message is not None:
                self.add(exit_message)
            self._finish()
        finally:
            self.closed = True
            fd, self._fd = self._fd, None
            try:
                os.close(fd)  # releases the lock
            except OSError:
                pass

    @_guarded
    def _finish(self) -> None:
        if self.failed is not None:
            return  # the file ends at its last whole frame, as a killed writer's would
        self._flush(final=True)
        index_offset = self.offset
        index = {
            "messages": self._messages.segments,
            "payloads": self._payloads.segments,
            "checkpoints": self._checkpoints.rows,
            "failed": self.failed,
        }
        data = zlib.compress(msgpack.packb(index, use_bin_type=True, default=_fallback), MESSAGES_LEVEL)
        self._write(
            frames.frame(frames.INDEX, frames.ZLIB, {"bytes": index_offset}, data) + frames.trailer(index_offset)
        )

    def abandon_after_fork(self) -> None:
        """In a forked child: let go of the parent's file without writing to it."""
        self.closed = True
        fd, self._fd = self._fd, None
        if fd is not None:
            try:
                os.close(fd)  # the parent's descriptor keeps the lock
            except OSError:
                pass
