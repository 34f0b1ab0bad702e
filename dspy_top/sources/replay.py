"""`RecordingSource`: recordings replayed as the processes they hold, on a clock the user moves.

One key per recording (its path): a run's several processes are several files, replayed on
one clock (`ReplayClock`). Each turn tells the sink every message the files hold up to the
clock's position, in file order; a `calls` batch is told call by call, each at the moment it
finished. Going back, or far ahead, starts a process over (`Sink.restart`) from the latest
checkpoint before the moment, whose state comes as a `snapshot`, then folds forward: the fold
only moves forward, and a checkpoint is never more than a few hundred KiB of messages behind.
Payloads are read from the file; stops are refused (`CannotRequest`). A file still being
written is read as it grows, like `tail -f`.

When each message happened is the file's own account (`reader.Written`): its time, kept
within the stretch of the writer's clock its frame was written in, and never before the
message before it. So a moment means the same messages whichever checkpoint reading began at.

The one part a front end calls besides the collector: the controls (`clock`, `seek`, `step`,
`seek_trial`, `to_end`, `timeline`, `reached`), all safe from any thread.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspy_top import schema
from dspy_top.protocol import CALLS, EVAL_END, EXIT, PAYLOAD, Hello
from dspy_top.recording.reader import Recording, Written, message_time
from dspy_top.recording.state import RecordingState
from dspy_top.sources.base import CannotRequest, Readable, Source
from dspy_top.sources.replay_clock import ReplayClock
from dspy_top.sources.replay_timeline import Goto, Timeline, TrialMark, trial_marks

HISTORY = 10_000  # calls before a checkpoint a restart brings into the history (the fleet's default capacity)
TURN_ITEMS = 20_000  # messages and calls told per turn at most: a catch-up never holds the collector long
READ_FRAMES = 4  # messages frames decoded per read (about half a second of the job each)
RESTART_BYTES = 2 * 1024 * 1024  # a seek ahead skipping more file than this starts over from a checkpoint
CHUNK_SECONDS = 0.5  # messages folded together in a catch-up span at most this much recorded time
FOLLOW_POLL = 0.1  # seconds between looks at a file still being written, while following it
TIMELINE_EVERY = 10.0  # seconds between refreshes of a growing recording's end and trials
LOOKAHEAD = 60.0  # recorded seconds searched past a trial's end for its `eval_end`
CANNOT_STOP = "this is a replay of a recording: it cannot stop anything"


@dataclass(frozen=True)
class _Item:
    """One thing to tell, when it happened: a message, or calls `lo:hi` of a `calls` batch."""

    at: float
    message: dict[str, Any]
    lo: int = -1
    hi: int = -1


class _Track:
    """One recording, replayed as the process it holds."""

    def __init__(self, recording: Recording) -> None:
        self.recording = recording
        self.key = str(recording.path)
        self.pid = recording.hello.get("pid") if type(recording.hello.get("pid")) is int else None
        self.begin = recording.started_at  # before this the process had not started
        try:
            self.hello: Hello | None = schema.hello(recording.hello)
            self.bad_hello: str | None = None
        except Exception as exc:  # the file's own header is damaged: said on its row
            self.hello, self.bad_hello = None, f"{recording.path}: unreadable hello ({exc})"
        self.cursor = None
        self.pending: deque[_Item] = deque()
        self.shown = False  # its row is in the fleet
        self.delivered = -math.inf  # when the last message told happened (or the checkpoint started from)
        self.closed = False  # its stream is over and the sink was told
        self.exited = False  # its `exit` was told: the process ended (else it was cut off)
        self.live = recording.live
        self.end = recording.started_at
        self.marks: list[TrialMark] = []
        self.state = "live"  # complete, live (still written), cut off (its writer died), damaged
        # What was told, folded as the file's own state is (its latest stats and the calls after
        # it): a stream that ends without its `exit` ends on the exact totals, not on that stats.
        self.told = RecordingState()

    def survey(self) -> None:
        """Its end and trials, from the end state (a closed file's footer; else its last checkpoint)."""
        self.live = self.recording.live
        end = self.recording.end_state()
        # Its last message is told by when its last frame was written (the exit may say a moment before).
        index = self.recording.index()
        written = [segment.t1 for segment in index.messages[-1:]] + [ref.at for ref in index.checkpoints[-1:]]
        self.end = max([end.ended_at, self.begin, *written])
        self.state = "live" if end.live else ("damaged" if end.damage else "complete") if end.complete else "cut off"
        self.marks = trial_marks(self.key, self.pid or 0, end.state.scopes.values(), end.ended_at)

    def next_at(self) -> float | None:
        return self.pending[0].at if self.pending else None


class RecordingSource(Source):
    """The processes of `recordings` (opened `Recording`s, one process each), replayed.

    `history`: calls brought into the history pane on a restart (set it to the fleet's
    history capacity). The clock starts paused at the end (the whole run), or where `at` says.
    """

    stats_follow_calls = False  # a recording keeps fewer stats than calls: each call shows as it comes

    def __init__(self, recordings: Sequence[Recording], *, history: int = HISTORY, at: float | None = None,
                 monotonic=time.monotonic) -> None:
        if not recordings:
            raise ValueError("nothing to replay")
        self.history = history
        self.tracks = [_Track(recording) for recording in recordings]
        for track in self.tracks:
            track.survey()
        start = min(track.begin for track in self.tracks)
        end = max(track.end for track in self.tracks)
        if any(track.live for track in self.tracks):
            end = max(end, time.time())
        self.clock = ReplayClock(start, end, monotonic=monotonic)
        if at is not None:
            self.clock.seek(at)
        self.timeline = self._timeline(start, end)
        self._requests: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._answers: deque[tuple[str, dict[str, Any]]] = deque()
        self._request_ids = 0
        self._asked = 0  # controls used so far (from the UI's thread)
        self._done = 0  # of them, those whose turn has run
        self._behind = True  # more is due than one turn told: the next turn comes at once
        self._turned = False
        self._told: list[tuple[float, float]] = []  # each track's (low, high) after the last turn: see `_span`
        self._surveyed_at = time.monotonic()
        self._reached = threading.Condition()
        self._closed = False

    @property
    def where(self) -> str:
        if len(self.tracks) == 1:
            return f"the recording {self.tracks[0].key}"
        return f"{len(self.tracks)} recordings in {Path(self.tracks[0].key).parent}"

    @property
    def live(self) -> bool:
        """Any of its recordings is still being written."""
        return any(track.live for track in self.tracks)

    def _timeline(self, start: float, end: float) -> Timeline:
        marks = sorted((mark for track in self.tracks for mark in track.marks), key=lambda m: (m.run_start, m.number))
        return Timeline(start, end, tuple(marks))

    # --- the controls (any thread) ----------------------------------------------------------

    def seek(self, at: float) -> float:
        """Show the recording at `at` (epoch seconds); the position, kept within the recording."""
        position = self.clock.seek(at)
        self._wake()
        return position

    def step(self, steps: int) -> None:
        """Pause, and move to the next (1) or back to the previous (-1) message or call."""
        self.clock.pause()
        self._requests.put(("step", steps))
        self._wake()

    def seek_trial(self, mark: TrialMark) -> None:
        """Show the moment trial `mark` ended (its score in), or started if it never ended."""
        self._requests.put(("trial", mark))
        self._wake()

    def moment(self, goto: Goto) -> float:
        """The time in the recording `goto` means from the position (a trial: when it ended, as told).
        ValueError says why there is none."""
        if goto.kind == "trial":
            return self.trial_moment(self.timeline.trial(int(goto.value)))
        return self.timeline.moment(goto, self.clock.position())

    def to_end(self) -> None:
        """The end: a finished recording's last message (paused), a growing one's newest, followed."""
        if self.live:
            self.clock.follow()
        else:
            self.clock.pause()
            self.clock.seek(self.timeline.end)
        self._wake()

    def toggle(self) -> bool:
        """Play or pause; True when it now plays."""
        playing = self.clock.toggle()
        self._wake()
        return playing

    def step_speed(self, step: int) -> float:
        speed = self.clock.step_speed(step)
        self._wake()
        return speed

    def reached(self, at: float) -> bool:
        """Every message up to `at`, and none after it, was told to the sink (and folded)."""
        return self._turned and all(low <= at <= high for low, high in self._told)

    def wait_reached(self, at: float, timeout: float) -> bool:
        """Wait until `reached(at)`; False at the timeout (batch mode's steps)."""
        deadline = time.monotonic() + timeout
        with self._reached:
            while not self.reached(at):
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return False
                self._reached.wait(min(left, 0.1))
        return True

    def caught_up(self) -> bool:
        """Every control used so far has had its turn, and that turn told all that was due."""
        return self._done >= self._asked and self._turned and not self._behind

    def _wake(self) -> None:
        self._asked += 1
        sink = getattr(self, "sink", None)
        if sink is not None:
            sink.wake()

    # --- the Source, on the collector's thread -------------------------------------------------

    def settled(self) -> bool:
        return self._turned and not self._behind

    def wake_at(self) -> float | None:
        if self._behind or self._answers or not self._requests.empty():
            return 0.0
        playback = self.clock.playback()
        if not (playback.playing or playback.following):
            return None
        due = []
        for track in self.tracks:
            if not track.shown and track.hello is not None and not track.closed:
                due.append(track.begin)
            elif track.pending:
                due.append(track.pending[0].at)
        wake = self.clock.monotonic_at(min(due)) if due else None
        if any(not track.closed and not track.pending for track in self.tracks if track.live):
            poll = time.monotonic() + FOLLOW_POLL
            wake = poll if wake is None else min(wake, poll)
        return wake

    def turn(self, ready: Sequence[Readable], now: float) -> None:
        asked = self._asked
        while self._answers:
            key, answer = self._answers.popleft()
            self.sink.messages(key, [answer])
        self._refresh_live(now)
        while True:
            try:
                kind, value = self._requests.get_nowait()
            except queue.Empty:
                break
            if kind == "step":
                self._step(value)
            elif kind == "trial":
                self._trial(value)
        following = self.clock.playback().following
        target = math.inf if following else self.clock.position()  # following: all the file holds now
        budget = TURN_ITEMS
        for track in self.tracks:
            budget -= self._play(track, target, budget)
        self._behind = budget <= 0
        if following:  # the end is the newest moment read (the writer's clock may not be this one's)
            self.clock.extend(max(track.delivered for track in self.tracks))
        if not self._behind and all(track.closed for track in self.tracks):
            self.clock.stop_at_end()
            if following and not self.live:  # the writers stopped: the end, no longer live
                self.clock.pause()
        self._told = [self._span(track) for track in self.tracks]
        self._turned = True
        self._done = asked
        with self._reached:
            self._reached.notify_all()

    @staticmethod
    def _span(track: _Track) -> tuple[float, float]:
        """The moments `track`'s process is shown exactly as it was, as far as what was told goes: from
        the last message told to just before the next one (while it runs), or to before its start."""
        if track.hello is None:
            return (-math.inf, math.inf)
        if not track.shown:
            return (-math.inf, math.nextafter(track.begin, -math.inf))
        low = max(track.delivered, track.begin)
        if track.pending:
            return (low, math.nextafter(track.pending[0].at, -math.inf))
        if track.closed or track.cursor is None or track.cursor.ended:
            return (low, math.inf)
        return (low, math.nextafter(track.cursor.written, -math.inf))  # a growing file: read up to there

    def _refresh_live(self, now: float) -> None:
        """A recording being written grows: the clock's end follows the wall clock, its trials now and then."""
        if not any(track.live for track in self.tracks):
            return
        self.clock.extend(time.time())
        if now - self._surveyed_at < TIMELINE_EVERY and all(t.recording.live for t in self.tracks if t.live):
            return
        self._surveyed_at = now
        for track in self.tracks:
            if track.live:
                track.survey()
        end = max(track.end for track in self.tracks)
        if self.live:
            end = max(end, time.time())
            self.clock.extend(end)
        else:  # every writer stopped: the recording ends at its last message
            self.clock.extend(end, final=True)
        self.timeline = self._timeline(self.timeline.start, end)

    # --- telling what is due ---------------------------------------------------------------------

    def _play(self, track: _Track, target: float, budget: int) -> int:
        """Tell `track`'s messages up to `target`, at most `budget` of them; how many were told."""
        if track.hello is None:
            if not track.closed:
                track.closed = True
                self.sink.attach(track.key, track.pid)
                self.sink.closed(track.key, track.bad_hello or "unreadable")
            return 0
        if target < track.begin:
            if track.shown:  # gone back to before the process started
                self.sink.restart(track.key, None, [])
                track.shown, track.closed, track.cursor = False, False, None
                track.pending.clear()
            return 0
        if not track.shown or track.delivered > target or self._far(track, target):
            if budget <= 0:
                return 0
            self._restart(track, target)
        return self._tell(track, target, budget)

    def _far(self, track: _Track, target: float) -> bool:
        """A checkpoint at or before `target` lies far past what was read: starting from it is quicker."""
        if track.cursor is None or track.closed:
            return False
        if track.pending and track.pending[-1].at > target:
            return False
        checkpoints = track.recording.index().checkpoints
        at = bisect_right([ref.at for ref in checkpoints], target) - 1
        return at >= 0 and checkpoints[at].offset > track.cursor.offset + RESTART_BYTES

    def _restart(self, track: _Track, target: float) -> None:
        recording = track.recording
        position = recording.seek(at=target)
        track.cursor = recording.cursor(position, history=self.history)
        track.pending.clear()
        track.closed = track.exited = False
        first: list[dict[str, Any]] = []
        track.told = RecordingState() if position.state is None else \
            RecordingState.from_checkpoint(position.state.checkpoint())
        if position.state is not None:
            written = track.cursor.take(0)  # the checkpoint's snapshot only
            first = list(written[0].messages) if written else []
            if position.state.exit is not None:  # the checkpoint written at close: the process had ended
                first.append({**position.state.exit, "t": EXIT})
                track.exited = True
        self.clock.folding(position.at)
        try:
            track.shown = self.sink.restart(track.key, track.hello, first)
        finally:
            self.clock.folding(None)
        track.delivered = position.at
        if not track.shown:  # refused: the collector marked it
            track.closed = True

    def _fill(self, track: _Track, target: float, want: int) -> None:
        """Read frames until the next message is past `target` (or `want` are waiting, or the file ends)."""
        cursor = track.cursor
        pending = track.pending
        while cursor is not None and not cursor.ended and len(pending) < want and (
                not pending or pending[-1].at <= target):
            taken = cursor.take(READ_FRAMES)
            if not taken:
                return  # a file being written: nothing more yet
            for written in taken:
                pending.extend(_items(written))

    def _tell(self, track: _Track, target: float, budget: int) -> int:
        if track.closed or budget <= 0:
            return 0
        self._fill(track, target, budget + 1)
        due: list[_Item] = []
        pending = track.pending
        while pending and pending[0].at <= target and len(due) < budget:
            due.append(pending.popleft())
        told = len(due)
        for chunk in _chunks(due):
            self.clock.folding(chunk[-1].at)
            messages = _messages(chunk)
            track.told.apply_all(messages)
            try:
                accepted = self.sink.messages(track.key, messages)
            finally:
                self.clock.folding(None)
            track.delivered = chunk[-1].at
            track.exited = track.exited or any(item.message.get("t") == EXIT for item in chunk)
            if not accepted:  # refused: the collector marked it and closed it
                track.closed = True
                pending.clear()
                return told
        if not pending and track.cursor is not None and track.cursor.ended:
            track.closed = True
            if not track.exited:
                self._tell_exact_totals(track)
            self.sink.closed(track.key, "its exit" if track.exited else _cut_off(track.recording))
        return told

    def _tell_exact_totals(self, track: _Track) -> None:
        """A stream cut off before its `exit`: the calls stored after its latest `stats` (a writer
        stores one only every few calls) join the totals, as `RecordingState.totals()` adds them."""
        told = track.told
        if not told.tail():
            return
        totals = told.totals()
        if totals is not None:
            self.sink.messages(track.key, [{**told.stats, "t": "stats", "totals": totals}])

    # --- steps and trials -------------------------------------------------------------------------

    def _step(self, steps: int) -> None:
        position = self.clock.position()
        if steps > 0:
            upcoming = []
            for track in self.tracks:
                if track.hello is None:
                    continue
                if not track.shown:
                    upcoming.append(track.begin)
                    continue
                self._fill(track, position, TURN_ITEMS)
                after = next((item.at for item in track.pending if item.at > position), None)
                if after is not None:
                    upcoming.append(after)
            if upcoming:
                self.clock.seek(min(upcoming))
            return
        told = [track.delivered for track in self.tracks if track.shown and track.delivered <= position]
        if told:
            self.clock.seek(math.nextafter(max(told), -math.inf))

    def _trial(self, mark: TrialMark) -> None:
        self.clock.seek(self.trial_moment(mark))

    def trial_moment(self, mark: TrialMark) -> float:
        """When trial `mark` ended as the replay tells it (its `eval_end` told, its score in), or
        when it started if it never ended. Safe from any thread."""
        if mark.end is None:
            return mark.start
        track = next((t for t in self.tracks if t.key == mark.key), None)
        if track is None:
            return mark.end
        # Its `eval_end` may have been written a moment after the end it reports: find it, with a
        # reader of its own (a Recording is for one thread; this may be the UI's).
        with Recording(track.recording.path) as recording:
            cursor = recording.cursor(recording.seek(at=mark.end))
            horizon = mark.end + LOOKAHEAD
            while not cursor.ended:
                taken = cursor.take(READ_FRAMES)
                if not taken:
                    break
                for written in taken:
                    for item in _items(written):
                        if item.at > horizon:
                            return mark.end
                        message = item.message
                        if message.get("t") == EVAL_END and message.get("id") == mark.scope_id:
                            return max(item.at, mark.end)
        return mark.end

    # --- requests -----------------------------------------------------------------------------------

    def request_payload(self, key: str, call_id: int) -> int:
        track = next((t for t in self.tracks if t.key == key), None)
        if track is None:
            raise CannotRequest("not a process of this replay")
        self._request_ids += 1
        request = self._request_ids
        answer: dict[str, Any] = {"t": PAYLOAD, "req": request, "id": call_id}
        try:
            payload = track.recording.payload(call_id)
        except Exception as exc:  # a damaged stretch of the file: say so on the inspect screen
            payload = None
            answer["reason"] = f"cannot read it from {key}: {type(exc).__name__}: {exc}"
        answer["found"] = payload is not None
        if payload is not None:
            answer["payload"] = payload
        else:
            answer.setdefault("reason", f"the recording holds no payload for call {call_id} (payloads stop once a "
                                        "recording reaches its size cap, and a call the process never kept has none)")
        self._answers.append((key, answer))  # told on the next turn, once the collector expects it
        self.sink.wake()
        return request

    def request_stop(self, key: str, reason: str) -> None:
        raise CannotRequest(CANNOT_STOP)

    def close(self) -> None:
        self._closed = True
        for track in self.tracks:
            track.recording.close()
        with self._reached:
            self._reached.notify_all()


def _items(written: Written) -> list[_Item]:
    """The messages of one frame, a `calls` batch call by call, each with when it happened."""
    out: list[_Item] = []
    at, by = written.after, written.by
    for message in written.messages:
        if message.get("t") == CALLS:
            at = _calls(message, at, by, out)
            continue
        own = message_time(message)
        if own is not None:
            at = min(by, max(at, own))
        out.append(_Item(at, message))
    return out


def _calls(message: dict[str, Any], at: float, by: float, out: list[_Item]) -> float:
    """A `calls` batch's calls onto `out`, those finished at one moment together; the time after them."""
    rows = message.get("rows")
    fields = message.get("fields")
    if not isinstance(rows, list) or not isinstance(fields, (list, tuple)):
        out.append(_Item(at, message))  # malformed: told as it is, for the collector to refuse
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
            out.append(_Item(at, message, lo, number))
            lo = number
        at = moved
    if rows:
        out.append(_Item(at, message, lo, len(rows)))
    return at


def _chunks(items: list[_Item]) -> Iterator[list[_Item]]:
    """Consecutive runs of items spanning at most CHUNK_SECONDS: each is folded at its last one's time."""
    chunk: list[_Item] = []
    for item in items:
        if chunk and item.at - chunk[0].at > CHUNK_SECONDS:
            yield chunk
            chunk = []
        chunk.append(item)
    if chunk:
        yield chunk


def _messages(items: list[_Item]) -> list[dict[str, Any]]:
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


def _cut_off(recording: Recording) -> str:
    """Why a process's stream ended without its `exit`: where its recording stops."""
    if recording.live:
        return "its recording stopped being written"
    damage = recording.damage
    why = f"; {damage[-1].reason} (at byte {damage[-1].offset:,})" if damage else ""
    return f"the recording stops here, before the process's exit (it was killed, or its disk filled){why}"
