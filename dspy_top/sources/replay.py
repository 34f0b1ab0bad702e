"""`RecordingSource`: recordings replayed as the processes they hold, on a clock the user moves.

One key per recording (its path, a `Track`: replay_track.py): a run's several processes are
several files, replayed on one clock (`ReplayClock`: replay_clock.py). Each turn tells the sink
every message the files hold up to the clock's position, in file order, each at the moment it
happened (replay_items.py); going back, or far ahead, starts a process over from a checkpoint
(replay_telling.py). Payloads are read from the file; stops are refused (`CannotRequest`). A
file still being written is read as it grows, like `tail -f`: the clock's end, and now and then
the trials (replay_timeline.py), follow it.

The one part a front end calls besides the collector: the controls (replay_controls.py: `clock`,
`seek`, `step`, `seek_trial`, `to_end`, `timeline`, `reached`), all safe from any thread.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dspy_top.protocol import PAYLOAD
from dspy_top.recording.reader import Recording
from dspy_top.sources.base import CannotRequest, Readable, Source
from dspy_top.sources.replay_clock import ReplayClock
from dspy_top.sources.replay_controls import ReplayControls
from dspy_top.sources.replay_telling import TURN_ITEMS, TrackTelling
from dspy_top.sources.replay_timeline import Timeline
from dspy_top.sources.replay_track import Track

HISTORY = 10_000  # calls before a checkpoint a restart brings into the history (the fleet's default capacity)
FOLLOW_POLL = 0.1  # seconds between looks at a file still being written, while following it
TIMELINE_EVERY = 10.0  # seconds between refreshes of a growing recording's end and trials
CANNOT_STOP = "this is a replay of a recording: it cannot stop anything"


class RecordingSource(ReplayControls, TrackTelling, Source):
    """The processes of `recordings` (opened `Recording`s, one process each), replayed.

    `history`: calls brought into the history pane on a restart (set it to the fleet's
    history capacity). The clock starts paused at the end (the whole run), or where `at` says.
    """

    stats_follow_calls = False  # a recording keeps fewer stats than calls: each call shows as it comes

    def __init__(
        self,
        recordings: Sequence[Recording],
        *,
        history: int = HISTORY,
        at: float | None = None,
        monotonic=time.monotonic,
    ) -> None:
        if not recordings:
            raise ValueError("nothing to replay")
        self.history = history
        self.tracks = [Track(recording) for recording in recordings]
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
        self._told: list[tuple[float, float]] = []  # each track's (low, high) after the last turn: see `Track.span`
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
        self._told = [track.span() for track in self.tracks]
        self._turned = True
        self._done = asked
        with self._reached:
            self._reached.notify_all()

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
            answer.setdefault(
                "reason",
                f"the recording holds no payload for call {call_id} (payloads stop once a "
                "recording reaches its size cap, and a call the process never kept has none)",
            )
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
