"""A recording's checkpoints: when the writer stores the state (state.py), and how a reader loads one back.

A checkpoint bounds what a reader decodes to reach a moment (a seek, the end state): it holds the
whole state at that moment, standalone. The writer stores one after many call events, or many
bytes of messages once some seconds passed, or, while anything at all happens, after a long
while: a slow job's checkpoints would otherwise cost more than its calls. Where each one is goes
in the index (index.py); each frame also names the one before it.
"""

from __future__ import annotations

import zlib
from typing import Any

import msgpack

from dspy_top.recording import frames
from dspy_top.recording.frames import Broken, Torn
from dspy_top.recording.scan import FileView
from dspy_top.recording.state import RecordingState

# A checkpoint after this many call events, or this many bytes of messages (once this many
# seconds passed), or, while anything at all happens, this long.
CHECKPOINT_CALLS = 20_000
CHECKPOINT_BYTES = 256 * 1024
CHECKPOINT_SECONDS = 30.0
CHECKPOINT_SECONDS_MAX = 600.0


class CheckpointSchedule:
    """The writer's checkpoints: when the next is due, and where each stored one is (the index's rows)."""

    def __init__(self, now: float) -> None:
        self.rows: list[list[Any]] = []  # [offset, written, calls, seq] per checkpoint
        self.at = now
        self.calls = 0  # call events in the file at the last checkpoint
        self.bytes = 0  # bytes of messages added since the last checkpoint

    @property
    def latest(self) -> int | None:
        """The offset of the last checkpoint stored (None: none yet)."""
        return self.rows[-1][0] if self.rows else None

    def due(self, state: RecordingState, now: float) -> bool:
        if state.stats is None:
            return False
        if state.calls - self.calls >= CHECKPOINT_CALLS:
            return True
        waited = now - self.at
        if self.bytes >= CHECKPOINT_BYTES:
            return waited >= CHECKPOINT_SECONDS
        return self.bytes > 0 and waited >= CHECKPOINT_SECONDS_MAX

    def frame(self, state: RecordingState, offset: int, now: float, level: int, fallback: Any) -> bytes:
        """The checkpoint frame of `state`, to be written at `offset`; counted as stored."""
        stored = state.checkpoint()
        stored["bytes"] = offset
        data = zlib.compress(msgpack.packb(stored, use_bin_type=True, default=fallback), level)
        frame = frames.frame(
            frames.CHECKPOINT,
            frames.ZLIB,
            {
                frames.WRITTEN: now,
                frames.SEQ: state.seq,
                frames.CALLS: state.calls,
                frames.PREVIOUS: self.latest,
            },
            data,
        )
        self.rows.append([offset, now, state.calls, state.seq])
        self.at = now
        self.calls = state.calls
        self.bytes = 0
        return frame


def load(view: FileView, offset: int) -> RecordingState | None:
    """The state stored by the checkpoint at `offset`; None (noted as damage) if it cannot be read."""
    try:
        found = view.frame_at(offset, view.size())
        if found.kind != frames.CHECKPOINT:
            raise Broken("not a checkpoint")
        stored = frames.unpack_standalone(found, view.data(found))
        return RecordingState.from_checkpoint(stored)
    except (Torn, Broken, TypeError, ValueError, AttributeError) as exc:
        view.note(offset, f"damaged checkpoint ({exc}); an earlier one is used")
        return None
