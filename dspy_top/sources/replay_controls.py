"""A replay's controls: where the user moves the clock (seek, step, trials, the end), and what was reached.

Mixed into `RecordingSource` (replay.py). The controls are the one part a front end calls
besides the collector, and are safe from any thread: they move the clock (`ReplayClock`) or
queue a request (a step, a trial) for the collector's next turn, then wake it. `reached`
says when every message up to a moment, and none after it, was told and folded.
"""

from __future__ import annotations

import math
import time

from dspy_top.protocol import EVAL_END
from dspy_top.recording.reader import Recording
from dspy_top.sources.replay_items import timed_items
from dspy_top.sources.replay_telling import READ_FRAMES, TURN_ITEMS
from dspy_top.sources.replay_timeline import Goto, TrialMark

LOOKAHEAD = 60.0  # recorded seconds searched past a trial's end for its `eval_end`


class ReplayControls:
    """seek, step, trials, play and pause, the end; `reached` and `caught_up` for those who wait on them."""

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

    # --- steps and trials, on the collector's thread -------------------------------------------

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
                    for item in timed_items(written):
                        if item.at > horizon:
                            return mark.end
                        message = item.message
                        if message.get("t") == EVAL_END and message.get("id") == mark.scope_id:
                            return max(item.at, mark.end)
        return mark.end
