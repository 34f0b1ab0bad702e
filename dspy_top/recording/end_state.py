"""How a recording ends: the state after its last message, found from its last checkpoint, not its start.

A closed recording says where that checkpoint is in its footer; one without a footer (its writer
killed, or still writing) is searched from its end: its last frame names the latest checkpoint
before it. The messages after the checkpoint are then folded into its state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dspy_top.recording import checkpoints, frames
from dspy_top.recording.checked import moment
from dspy_top.recording.decoder import SegmentDecoder, messages_of
from dspy_top.recording.frames import Damage
from dspy_top.recording.index import CheckpointRef, Index
from dspy_top.recording.scan import FileView
from dspy_top.recording.state import RecordingState


@dataclass(frozen=True)
class EndState:
    """How the recording ends: the state after its last message."""

    state: RecordingState
    complete: bool  # closed by its writer (it has a footer)
    live: bool  # its writer is still writing it
    started_at: float
    ended_at: float
    damage: tuple[Damage, ...]

    @property
    def stats(self) -> dict[str, Any]:
        """The latest `stats` stored (see `totals` for the totals up to the last call)."""
        return self.state.stats or {}

    @property
    def totals(self) -> dict[str, Any] | None:
        """The process's totals up to its last stored call (the latest stats and the calls after
        it); None when the file holds no stats at all."""
        return self.state.totals()


def read_end(view: FileView, first: int, started_at: float, live: bool, size: int, index: Index | None) -> EndState:
    """The end state of the recording in `view` (`size` bytes read; its first frame after the header at
    `first`), from its footer's `index` if it has one (see index.from_footer)."""
    start: CheckpointRef | None = None
    state: RecordingState | None = None
    if index is not None:
        for ref in reversed(index.checkpoints):
            state = checkpoints.load(view, ref.offset)
            if state is not None:
                start = ref
                break
    else:
        last = view.last_frame(first, size)
        if last is not None:
            offset = last.offset if last.kind == frames.CHECKPOINT else last.meta.get(frames.CHECKPOINT_AT)
            if isinstance(offset, int):
                state = checkpoints.load(view, offset)
                if state is not None:
                    start = CheckpointRef(offset, state.at, state.calls, state.seq)
    if state is None:
        state = RecordingState()
    offset = start.offset if start is not None else first
    ended = start.at if start is not None else started_at
    decoder = SegmentDecoder(view, frames.MESSAGES)
    for found in view.walk(offset, size, quiet_tail=live):
        if found.kind == frames.MESSAGES:
            ended = max(ended, moment(found.meta.get(frames.WRITTEN), 0.0))
        state.apply_all(messages_of(decoder.feed(found)))
    if state.exit is not None and moment(state.exit.get("at")) is not None:
        ended = moment(state.exit["at"])
    return EndState(state, index is not None, live, started_at, max(ended, started_at), tuple(view.damage))
