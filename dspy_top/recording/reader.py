"""`Recording`: reads a recording file: its hello, its messages from any point, its end state,
one call's payload, and a file still being written (like `tail -f`).

Whatever is readable is read: damage (a torn tail, a corrupted stretch) is noted in
`damage`, each entry naming the file and the byte offset, and reading goes on past it
where the format allows. A file that is not a readable recording at all (empty, foreign,
a newer format, a broken header) raises RecordingError when opened.

Its parts: where the segments and checkpoints are (index.py), the streams decoded
(decoder.py), a checkpoint loaded (checkpoints.py), the end state (end_state.py).
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspy_top.protocol import CALL, CALLS, SNAPSHOT, call_dicts
from dspy_top.recording import checkpoints, frames
from dspy_top.recording.checked import amount, moment
from dspy_top.recording.decoder import SegmentDecoder, messages_of
from dspy_top.recording.end_state import EndState, read_end
from dspy_top.recording.frames import Broken, Damage, RecordingError, Torn
from dspy_top.recording.index import Index, IndexWalker, from_footer
from dspy_top.recording.scan import FileView
from dspy_top.recording.state import RecordingState

FOLLOW_POLL = 0.1


@dataclass(frozen=True)
class Position:
    """Where a reader starts: a checkpoint's state and the first frame after it (or the file's start)."""

    offset: int
    state: RecordingState | None  # None: the start of the recording
    at: float


class Recording:
    """One recording file, open for reading. Any number may read one file, also while it is written."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            # O_NONBLOCK: opening a FIFO named as a recording would otherwise wait for a writer forever
            # (a regular file reads the same either way).
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except ValueError as exc:  # a NUL in the name (a path from the wire, or typed)
            raise RecordingError(self.path, 0, f"not a file name ({exc})") from None
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            os.close(fd)
            raise
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise RecordingError(self.path, 0, "not a regular file: not a dspy-top recording")
        self._view = FileView(str(self.path), fd)
        self._not_live = False
        self._walker: IndexWalker | None = None
        self._footer: Index | None = None
        self._payload_cache: tuple[tuple[int, int], dict[int, Any]] | None = None
        try:
            self._read_header()
        except BaseException:
            os.close(fd)
            raise
        self.live  # noqa: B018 (a property read for its effect) takes the shared lock unless a writer holds the file: retention leaves it alone

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._view.fd >= 0:
            os.close(self._view.fd)
            self._view.fd = -1

    def _read_header(self) -> None:
        view, path = self._view, self.path
        size = view.size()
        head = view.read(0, frames.FILE_HEADER.size)
        if size == 0:
            raise RecordingError(path, 0, "empty file: not a dspy-top recording (or its writer never started)")
        magic = head[: len(frames.MAGIC)]
        if magic != frames.MAGIC:
            if len(head) < len(frames.MAGIC) and frames.MAGIC.startswith(head):
                raise RecordingError(path, size, "truncated: the file ends inside its header")
            raise RecordingError(path, 0, f"not a dspy-top recording (it starts with {head[:12]!r})")
        if len(head) < frames.FILE_HEADER.size:
            raise RecordingError(path, size, "truncated: the file ends inside its header")
        _, major, minor = frames.FILE_HEADER.unpack(head)
        if major != frames.FORMAT_MAJOR:
            newer = major > frames.FORMAT_MAJOR
            raise RecordingError(
                path,
                len(frames.MAGIC),
                (
                    f"recording format {major}.{minor} is {'newer than' if newer else 'not one'} this dspy-top reads "
                    f"({frames.FORMAT_MAJOR}.x)" + ("; upgrade dspy-top to read it" if newer else "")
                ),
            )
        self.format_version = (major, minor)
        offset = frames.FILE_HEADER.size
        try:
            found = view.frame_at(offset, size)
            if found.kind != frames.HEADER:
                raise Broken("the first frame is not the header")
            header = frames.unpack_standalone(found, view.data(found))
        except Torn:
            raise RecordingError(path, size, "truncated: the file ends inside its header frame") from None
        except Broken as exc:
            raise RecordingError(path, offset, f"damaged header ({exc})") from None
        if not isinstance(header, dict) or not isinstance(header.get("hello"), dict):
            raise RecordingError(path, offset, "damaged header (no hello)")
        self.header: dict[str, Any] = header
        self.hello: dict[str, Any] = header["hello"]
        self._first = found.end

    # --- facts ----------------------------------------------------------------------------

    @property
    def damage(self) -> list[Damage]:
        """Damaged stretches found so far, each with its byte offset (what came before was read)."""
        return list(self._view.damage)

    @property
    def size(self) -> int:
        return self._view.size()

    @property
    def started_at(self) -> float:
        return moment(self.hello.get("started_at")) or moment(self.header.get("created_at")) or 0.0

    @property
    def live(self) -> bool:
        """Its writer is still writing it (it holds the file's lock)."""
        if self._not_live or self._footer is not None:
            return False
        try:
            # Kept once taken: a recording being read is never removed by retention.
            fcntl.flock(self._view.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            pass
        self._not_live = True
        return False

    def index(self) -> Index:
        """Where the segments and checkpoints are: the footer's, or walked (and extended while live)."""
        if self._footer is not None:
            return self._footer
        if self._walker is None:
            live = self.live
            if not live:
                self._footer = from_footer(self._view, self._view.size())
                if self._footer is not None:
                    return self._footer
            self._walker = IndexWalker(self._view, self._first)
        return self._walker.extend(quiet_tail=self.live)

    # --- messages -------------------------------------------------------------------------

    def messages(self, start: Position | None = None, history: int = 0) -> Iterator[dict[str, Any]]:
        """The messages the process served, in order, from the start or from `start` (see `seek`),
        which yields first a `snapshot` of the state there (with up to `history` calls before it)."""
        return self._read(start, history, follow=False, poll=0.0, stop=None)

    def follow(
        self,
        start: Position | None = None,
        history: int = 0,
        poll: float = FOLLOW_POLL,
        stop: threading.Event | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Like `messages`, then waits for more while the writer writes (like `tail -f`); ends when
        the writer closes the file or dies, or when `stop` is set."""
        return self._read(start, history, follow=True, poll=poll, stop=stop)

    def _read(
        self, start: Position | None, history: int, follow: bool, poll: float, stop: threading.Event | None
    ) -> Iterator[dict[str, Any]]:
        offset = self._first
        if start is not None:
            offset = start.offset
            if start.state is not None:
                yield start.state.snapshot(self.calls_before(start, history) if history else None)
        decoder = SegmentDecoder(self._view, frames.MESSAGES)
        closed = False
        while True:
            live = self.live  # before the size: once it is false, the size read next is final
            for found in self._view.walk(offset, quiet_tail=live):
                yield from messages_of(decoder.feed(found))
                offset = found.end
                closed = closed or found.kind == frames.INDEX  # the footer: nothing more will come
            if closed or not (follow and live):
                return
            if stop is not None:
                if stop.wait(poll):
                    return
            else:
                time.sleep(poll)

    def cursor(self, start: Position | None = None, history: int = 0) -> Cursor:
        """The messages from the start or from `start`, as `messages` gives them, read a few
        frames at a time and never waiting: for a reader that must not block (a replay, in the
        collector's thread). See `Cursor`."""
        return Cursor(self, start, history)

    def calls_before(self, position: Position, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` call events written before `position`, oldest first, as `call` maps."""
        calls: list[dict[str, Any]] = []
        for segment in reversed([s for s in self.index().messages if s.offset < position.offset]):
            found: list[dict[str, Any]] = []
            for message in self._segment(frames.MESSAGES, segment.offset):
                kind = message.get("t")
                if kind == CALLS:
                    found.extend(call_dicts(message.get("fields") or (), message.get("rows") or ()))
                elif kind == CALL:
                    found.append(message)
                elif kind == SNAPSHOT:
                    found.extend(message.get("calls") or ())
            calls = found + calls
            if len(calls) >= limit:
                break
        return calls[-limit:] if limit else []

    def _segment(self, kind: int, offset: int) -> Iterator[Any]:
        """The records of the one segment that starts at `offset`."""
        decoder = SegmentDecoder(self._view, kind)
        for found in self._view.walk(offset, quiet_tail=True):
            if found.kind == kind and found.meta.get(frames.SEGMENT) != offset:
                return
            yield from decoder.feed(found)

    # --- seeking and the end ----------------------------------------------------------------

    def seek(self, at: float | None = None, fraction: float | None = None, checkpoint: int | None = None) -> Position:
        """Where to start reading for a moment (epoch seconds), a fraction of the recording's
        duration (0 to 1), or the checkpoint with this number (negative: from the end): the
        checkpoint at or before it, whose messages up to the moment follow."""
        index = self.index()
        refs = index.checkpoints
        if checkpoint is not None:
            candidates = refs[: checkpoint + 1] if checkpoint >= 0 else refs[: len(refs) + checkpoint + 1]
        else:
            if fraction is not None:
                start, end = self.started_at, self._last_time(index)
                at = start + max(0.0, min(1.0, fraction)) * max(0.0, end - start)
            moment = at if at is not None else float("-inf")
            candidates = [ref for ref in refs if ref.at <= moment]
        for ref in reversed(candidates):
            state = checkpoints.load(self._view, ref.offset)
            if state is not None:
                return Position(ref.offset, state, ref.at)
        return Position(self._first, None, self.started_at)

    def _last_time(self, index: Index) -> float:
        times = [s.t1 for s in index.messages[-1:]] + [ref.at for ref in index.checkpoints[-1:]]
        return max(times, default=self.started_at)

    def end_state(self) -> EndState:
        """The state after the last message: the last checkpoint and the messages after it.

        A closed recording says where that checkpoint is in its footer; one without a footer
        (killed, or still being written) is searched from its end, not read from the start."""
        view = self._view
        live = self.live
        size = view.size()
        index = None if live else from_footer(view, size)
        if index is not None:
            self._footer = index
        return read_end(view, self._first, self.started_at, live, size, index)

    # --- payloads ---------------------------------------------------------------------------

    def payload(self, call_id: int) -> dict[str, Any] | None:
        """One call's payload (as the process would have sent it), or None if the file lacks it."""
        for segment in reversed(self.index().payloads):
            if not segment.may_hold(call_id):
                continue
            key = (segment.offset, segment.count)
            cached = self._payload_cache
            if cached is None or cached[0] != key:
                records = {}
                for record in self._segment(frames.PAYLOADS, segment.offset):
                    if isinstance(record, list) and len(record) == 2:
                        records[record[0]] = record[1]
                cached = self._payload_cache = (key, records)
            if call_id in cached[1]:
                return cached[1][call_id]
        return None


@dataclass(frozen=True)
class Written:
    """The messages of one messages frame, and the stretch of the writer's clock they were written in.

    Each was added to the writer after `after` (its previous write, or the checkpoint read
    from) and by `by` (this frame's write): whatever its own fields say, that is when the
    file knew of it. The bounds come from the frames alone, so they are the same whichever
    checkpoint reading began at.
    """

    after: float
    by: float
    messages: list[dict[str, Any]]


class Cursor:
    """Reads a recording's messages a few frames at a time, never waiting (`Recording.cursor`).

    Each `take` decodes the next whole frames the file holds now and returns their messages,
    frame by frame (`Written`); a file still being written grows between takes, and a frame
    being written is left for a later take. From a checkpoint the first take starts with a
    `snapshot` of the state there (with up to `history` calls before it). `ended` once the
    whole stream was read: the footer came, or the writer is gone and the file read to its end.
    """

    def __init__(self, recording: Recording, start: Position | None, history: int) -> None:
        self.recording = recording
        self.offset = recording._first if start is None else start.offset
        self.written = recording.started_at if start is None else start.at  # the last write read so far
        self.ended = False
        self._decoder = SegmentDecoder(recording._view, frames.MESSAGES)
        self._start = start if start is not None and start.state is not None else None
        self._history = history

    def take(self, frames_wanted: int = 4) -> list[Written]:
        """The messages of up to `frames_wanted` more messages frames (fewer at the file's end)."""
        out: list[Written] = []
        start, self._start = self._start, None
        if start is not None:
            calls = self.recording.calls_before(start, self._history) if self._history else None
            out.append(Written(start.at, start.at, [start.state.snapshot(calls)]))
        if self.ended:
            return out
        live = self.recording.live  # before the walk's size: once it is false, the size is final
        for found in self.recording._view.walk(self.offset, quiet_tail=live):
            self.offset = found.end
            if found.kind == frames.INDEX:  # the footer: nothing more will come
                self.ended = True
                return out
            written = found.meta.get(frames.WRITTEN)
            by = max(self.written, float(written)) if isinstance(written, (int, float)) else self.written
            if found.kind == frames.MESSAGES:
                messages = list(messages_of(self._decoder.feed(found)))
                if messages:
                    out.append(Written(self.written, by, messages))
                self.written = by
            elif found.kind == frames.CHECKPOINT:
                self.written = by
            if len(out) >= frames_wanted:
                return out
        self.ended = not live
        return out


def message_time(message: dict[str, Any]) -> float | None:
    """When a message happened (epoch seconds), from its own fields; None if it says nothing."""
    kind = message.get("t")
    if kind == CALLS:
        fields = list(message.get("fields") or ())
        rows = message.get("rows") or ()
        if rows and "start" in fields and "latency" in fields:
            start, latency = fields.index("start"), fields.index("latency")
            ends = [_ended(row[start], row[latency]) for row in rows if len(row) > max(start, latency)]
            return max(ends, default=None)
        return None
    if kind == CALL:
        return _ended(message.get("start"), message.get("latency"))
    for key in ("at", "end", "start"):
        value = moment(message.get(key))
        if value is not None:
            return value
    if kind == SNAPSHOT and isinstance(message.get("stats"), dict):
        return moment(message["stats"].get("at"))
    return None


def _ended(start: Any, latency: Any) -> float | None:
    """When a call ended, from its start and latency as the file holds them (None when its start is no time)."""
    began = moment(start)
    return None if began is None else moment(began + amount(latency), began)
