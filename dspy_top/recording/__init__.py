"""Recording files: what an instrumented process serves, kept on disk to replay, list and export.

`RecordingWriter` (writer.py) runs in the job, on the server thread; `Recording` (reader.py)
reads a file, also one still being written; runs.py names and prunes the runs directory;
summary.py lists recordings. The format is in docs/recording-format.md. Standard library,
msgpack and platformdirs only (the summary's best score borrows the pure model).
"""

from dspy_top.recording.end_state import EndState
from dspy_top.recording.frames import Damage, RecordingError
from dspy_top.recording.reader import Position, Recording, message_time
from dspy_top.recording.runs import default_path, prune, runs_dir
from dspy_top.recording.state import RecordingState
from dspy_top.recording.writer import DEFAULT_CAP, RecordingWriter

__all__ = [
    "DEFAULT_CAP",
    "Damage",
    "EndState",
    "Position",
    "Recording",
    "RecordingError",
    "RecordingState",
    "RecordingWriter",
    "default_path",
    "message_time",
    "prune",
    "runs_dir",
]
