"""`Track`: one recording being replayed as the process it holds, and how far its telling got.

A `RecordingSource` holds one track per recording. The track keeps the file's reader
(`cursor`), the messages read but not yet told (`pending`), when the last one told happened,
and what was told folded as the file's own state is (`told`), so a stream cut off before its
`exit` can still end on the exact totals. `survey` reads its end and trials from the file.
"""

from __future__ import annotations

import math
from collections import deque

from dspy_top import schema
from dspy_top.protocol import Hello
from dspy_top.recording.reader import Recording
from dspy_top.recording.state import RecordingState
from dspy_top.sources.replay_items import Item
from dspy_top.sources.replay_timeline import TrialMark, trial_marks


class Track:
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
        self.pending: deque[Item] = deque()
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

    def span(self) -> tuple[float, float]:
        """The moments its process is shown exactly as it was, as far as what was told goes: from
        the last message told to just before the next one (while it runs), or to before its start."""
        if self.hello is None or (self.closed and not self.shown):  # refused: nothing of it will be told
            return (-math.inf, math.inf)
        if not self.shown:
            return (-math.inf, math.nextafter(self.begin, -math.inf))
        low = max(self.delivered, self.begin)
        if self.pending:
            return (low, math.nextafter(self.pending[0].at, -math.inf))
        if self.closed or self.cursor is None or self.cursor.ended:
            return (low, math.inf)
        return (low, math.nextafter(self.cursor.written, -math.inf))  # a growing file: read up to there


def cut_off_reason(recording: Recording) -> str:
    """Why a process's stream ended without its `exit`: where its recording stops."""
    if recording.live:
        return "its recording stopped being written"
    damage = recording.damage
    why = f"; {damage[-1].reason} (at byte {damage[-1].offset:,})" if damage else ""
    return f"the recording stops here, before the process's exit (it was killed, or its disk filled){why}"
