"""How a replay tells the sink what its tracks hold up to a moment: in file order, in a bounded turn.

Mixed into `RecordingSource` (replay.py), on the collector's thread. Telling only moves
forward: going back, or far ahead, starts the process over (`Sink.restart`) from the latest
checkpoint before the moment, whose state comes as a `snapshot`, then folds forward from there.
A checkpoint is never more than a few hundred KiB of messages behind. A stream that ends
without its `exit` is closed with the exact totals its file holds and where it was cut off.
"""

from __future__ import annotations

from bisect import bisect_right
from typing import Any

from dspy_top.protocol import EXIT, STATS
from dspy_top.recording.state import RecordingState
from dspy_top.sources.replay_items import Item, fold_chunks, protocol_messages, timed_items
from dspy_top.sources.replay_track import Track, cut_off_reason

TURN_ITEMS = 20_000  # messages and calls told per turn at most: a catch-up never holds the collector long
READ_FRAMES = 4  # messages frames decoded per read (about half a second of the job each)
RESTART_BYTES = 2 * 1024 * 1024  # a seek ahead skipping more file than this starts over from a checkpoint


class TrackTelling:
    """Each track's messages up to a target moment, told to the sink (`self.sink`) on the replay's clock."""

    def _play(self, track: Track, target: float, budget: int) -> int:
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

    def _far(self, track: Track, target: float) -> bool:
        """A checkpoint at or before `target` lies far past what was read: starting from it is quicker."""
        if track.cursor is None or track.closed:
            return False
        if track.pending and track.pending[-1].at > target:
            return False
        checkpoints = track.recording.index().checkpoints
        at = bisect_right([ref.at for ref in checkpoints], target) - 1
        return at >= 0 and checkpoints[at].offset > track.cursor.offset + RESTART_BYTES

    def _restart(self, track: Track, target: float) -> None:
        recording = track.recording
        position = recording.seek(at=target)
        track.cursor = recording.cursor(position, history=self.history)
        track.pending.clear()
        track.closed = track.exited = False
        first: list[dict[str, Any]] = []
        track.told = (
            RecordingState() if position.state is None else RecordingState.from_checkpoint(position.state.checkpoint())
        )
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

    def _fill(self, track: Track, target: float, want: int) -> None:
        """Read frames until the next message is past `target` (or `want` are waiting, or the file ends)."""
        cursor = track.cursor
        pending = track.pending
        while (
            cursor is not None
            and not cursor.ended
            and len(pending) < want
            and (not pending or pending[-1].at <= target)
        ):
            taken = cursor.take(READ_FRAMES)
            if not taken:
                return  # a file being written: nothing more yet
            for written in taken:
                pending.extend(timed_items(written))

    def _tell(self, track: Track, target: float, budget: int) -> int:
        if track.closed or budget <= 0:
            return 0
        self._fill(track, target, budget + 1)
        due: list[Item] = []
        pending = track.pending
        while pending and pending[0].at <= target and len(due) < budget:
            due.append(pending.popleft())
        told = len(due)
        for chunk in fold_chunks(due):
            self.clock.folding(chunk[-1].at)
            messages = protocol_messages(chunk)
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
            self.sink.closed(track.key, "its exit" if track.exited else cut_off_reason(track.recording))
        return told

    def _tell_exact_totals(self, track: Track) -> None:
        """A stream cut off before its `exit`: the calls stored after its latest `stats` (a writer
        stores one only every few calls) join the totals, as `RecordingState.totals()` adds them."""
        told = track.told
        if not told.tail():
            return
        totals = told.totals()
        if totals is not None:
            self.sink.messages(track.key, [{**told.stats, "t": STATS, "totals": totals}])
