"""A call's payload read from its process's recording, for a live viewer whose process ended (or no
longer holds the call).

Where a process records comes from its hello or its exit (`recording`), else from the runs
directory: a file named with its pid whose hello has the same pid and start. A file is
used only when its own hello says it is that process's. Ended processes' files stay open
(a few, the most recently used) for the next payload; a file still being written is read
afresh each time, to see what was written since. No dspy, no Textual: the collector's thread
calls it.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

from dspy_top.recording import runs
from dspy_top.recording.frames import RecordingError
from dspy_top.recording.reader import Recording

OPEN_FILES = 4  # recordings kept open for the next payload


class RecordedPayloads:
    """Payloads from the recordings of the processes the collector saw."""

    def __init__(self, runs_dir: Path | None = None) -> None:
        self.runs_dir = runs_dir
        self._who: dict[str, tuple[int, float]] = {}  # process key -> (pid, started_at), from its hello
        self._named: dict[str, str] = {}  # process key -> the file its hello or exit named
        self._found: dict[str, Path | None] = {}  # process key -> its file, once looked for
        self._open: OrderedDict[Path, Recording] = OrderedDict()

    def saw_hello(self, key: str, pid: int, started_at: float, recording: str | None) -> None:
        self._who[key] = (pid, started_at)
        if recording:
            self._named[key] = recording
            self._found.pop(key, None)

    def saw_exit(self, key: str, recording: str | None) -> None:
        if recording and self._named.get(key) != recording:
            self._named[key] = recording
            self._found.pop(key, None)

    def payload(self, key: str, call_id: int) -> tuple[dict[str, Any] | None, str | None]:
        """(the payload, None), or (None, why not) when there is no recording or it lacks the call."""
        path = self._path(key)
        if path is None:
            return None, None
        try:
            recording = self._recording(path)
            payload = recording.payload(call_id)
            if recording.live:  # still written: read afresh next time
                self._forget(path)
        except (RecordingError, OSError) as exc:
            self._forget(path)
            return None, f"its recording {path} cannot be read ({exc})"
        if not isinstance(payload, dict):
            return None, f"its recording {path} holds no payload for this call (past its size cap, or never kept)"
        return payload, None

    def close(self) -> None:
        for recording in self._open.values():
            recording.close()
        self._open.clear()

    # --- which file -----------------------------------------------------------------------

    def _path(self, key: str) -> Path | None:
        if key in self._found:
            return self._found[key]
        who = self._who.get(key)
        found = None
        if who is not None:
            named = self._named.get(key)
            candidates = [Path(named)] if named else []
            candidates += self._in_runs_dir(who[0])
            found = next((path for path in candidates if self._is_of(path, *who)), None)
        if found is not None:  # else looked for again next time: the file may not be there yet
            self._found[key] = found
        return found

    def _in_runs_dir(self, pid: int) -> list[Path]:
        try:
            directory = self.runs_dir or runs.runs_dir()
            return [path for path in runs.recordings(directory) if f"-{pid}-" in path.name]
        except OSError:
            return []

    @staticmethod
    def _is_of(path: Path, pid: int, started_at: float) -> bool:
        """Whether `path` is the recording of the process `pid` that started at `started_at`."""
        try:
            if path.stat().st_uid != os.geteuid():  # a name from the wire: only the user's own files
                return False
            with Recording(path) as recording:
                hello = recording.hello
        except (RecordingError, OSError, ValueError):
            return False
        return hello.get("pid") == pid and abs(float(hello.get("started_at") or 0.0) - started_at) < 1e-3

    def _recording(self, path: Path) -> Recording:
        recording = self._open.get(path)
        if recording is None:
            recording = self._open[path] = Recording(path)
            while len(self._open) > OPEN_FILES:
                self._open.popitem(last=False)[1].close()
        self._open.move_to_end(path)
        return recording

    def _forget(self, path: Path) -> None:
        recording = self._open.pop(path, None)
        if recording is not None:
            recording.close()
