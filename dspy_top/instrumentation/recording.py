"""The job's recording: everything its socket server serves, written to a file by the server thread.

`DSPY_TOP_RECORD` or `instrument(record=...)` says where (`JobSettings.record`): the runs
directory (`True`), a directory (one file per process in it), or a file (a process that finds
it taken, a forked child or a wrapper's second Python, writes `<name>-<pid>.dtop` beside it).
The file is opened on the server thread, which hands it every redacted message it serves
(the same pass as the socket's: no credential reaches the disk), each recorded call's payload
as its call's event comes (before the call's row), and the exit message; it is written at most
every half second and closed at exit. Opening it applies the runs directory's retention rule.
Any failure stops the recording, said once on stderr; the job and its viewers go on.
"""

from __future__ import annotations

import operator
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dspy_top import paths
from dspy_top.instrumentation.gil_handoff import Handoff
from dspy_top.instrumentation.payload_pack import pack_plain
from dspy_top.protocol import CALLS, EXIT
from dspy_top.recording import runs
from dspy_top.recording.writer import RecordingWriter

# Payloads are fetched from the recorder's ring as their calls' events come, in batches of this many (one lock each).
PAYLOAD_BATCH = 512


def destination(record: bool | str, argv: Sequence[str], pid: int, started_at: float) -> tuple[Path, bool]:
    """The path this process records to first, and whether it is in a directory of one file per
    process (the runs directory, or a directory given): created (0700) if missing."""
    if record is True:
        return runs.default_path(argv, pid, started_at, runs.runs_dir(create=True)), True
    path = Path(record)
    if path.is_dir() or record.endswith(os.sep):
        if not path.is_dir():
            paths.ensure_private_dir(path)
        return runs.default_path(argv, pid, started_at, path), True
    if not path.parent.is_dir():
        paths.ensure_private_dir(path.parent)
    return path, False


def alternatives(first: Path, pid: int, per_process: bool) -> list[Path]:
    """Where to record when `first` is taken: by this pid, then numbered (never over another file)."""
    stem, suffix = first.stem, first.suffix or runs.SUFFIX
    if per_process:  # the name already holds the pid: a pid reused within the same second
        return [first.with_name(f"{stem}-{number}{suffix}") for number in range(2, 10)]
    return [first.with_name(f"{stem}-{pid}{suffix}")] + [
        first.with_name(f"{stem}-{pid}-{number}{suffix}") for number in range(2, 10)
    ]


class JobRecording:
    """One process's recording: opened on the server thread (`start`), fed by the server's taps."""

    def __init__(
        self,
        record: bool | str,
        cap_bytes: int,
        keep_bytes: int,
        argv: Sequence[str],
        started_at: float,
        payload_of: Callable[[Any], dict[str, Any]],
        payloads_of: Callable[[list[int]], list[Any]],
        warn: Callable[[str], None],
        packed_payloads: Callable[[list[int]], Any] | None = None,
        handoff: Handoff | None = None,
    ) -> None:
        self.record = record
        self.cap_bytes = cap_bytes
        self.keep_bytes = keep_bytes
        self.argv = list(argv)
        self.started_at = started_at
        self.payload_of = payload_of  # a kept call's payload, redacted as the socket sends it
        # The ring's kept calls for these ids (None: no longer kept), copied: the ring need not hold them.
        self.payloads_of = payloads_of
        self.warn = warn
        # These ids' payloads packed as `payload_of` would make them, where done in C, from the
        # ring's slots themselves, marked taken (a payload_pack.PackedBatch, or None where that is
        # not done).
        self.packed_payloads = packed_payloads
        # Told of the writer's calls that let the GIL go, and of each batch begun (gil_handoff.py).
        self.handoff = handoff
        self.writer: RecordingWriter | None = None
        self.path: Path | None = None
        self.closed = False
        self.opened = threading.Event()  # set once `start` ran (opened or not): see `path`, `failed`
        self.failed: str | None = None
        # A `calls` batch's fields -> what reads a row's id (None: no id there).
        self._id_of: dict[tuple, Callable[[Any], Any] | None] = {}

    # --- on the server thread -------------------------------------------------------

    def start(self, hello: dict[str, Any], snapshot: dict[str, Any]) -> bool:
        """Open the file and store the hello and the snapshot; False (said once) if it cannot be."""
        try:
            self.writer = self._create(hello)
        except OSError as exc:
            self._stop(f"cannot record to {exc.filename or self.record} ({exc.strerror or exc}); not recording")
            return False
        except Exception as exc:
            self._stop(f"cannot record ({type(exc).__name__}: {exc}); not recording")
            return False
        finally:
            self.opened.set()
        self.path = self.writer.path
        if self.handoff is not None:
            self.writer.gil_released(self.handoff.released)
        self.writer.add(snapshot)
        self._keep_sources([call["id"] for call in snapshot.get("calls") or () if isinstance(call.get("id"), int)])
        if self.record is True:
            self._prune()
        return True

    def _create(self, hello: dict[str, Any]) -> RecordingWriter:
        pid = os.getpid()
        first, per_process = destination(self.record, self.argv, pid, self.started_at)
        for candidate in [first] + alternatives(first, pid, per_process):
            try:
                return RecordingWriter.create(candidate, hello, cap_bytes=self.cap_bytes)
            except FileExistsError:
                continue
        raise FileExistsError(17, "every name beside it is taken", str(first))

    def _prune(self) -> None:
        try:
            runs.prune(self.path.parent, self.keep_bytes)
        except Exception as exc:  # retention is housekeeping: never the recording's end
            self.warn(f"cannot apply the retention rule to {self.path.parent} ({exc})")

    def take(self, message: dict[str, Any]) -> None:
        """A tap: one redacted message as the server serves it."""
        writer = self.writer
        if writer is None or self.closed:
            return
        kind = message.get("t")
        if kind == CALLS:
            fields = message.get("fields")
            key = tuple(fields) if fields else ()
            if key not in self._id_of:
                self._id_of[key] = operator.itemgetter(key.index("id")) if "id" in key else None
            id_of = self._id_of[key]
            if id_of is not None:
                self._keep_sources(list(map(id_of, message.get("rows") or ())))
            writer.add(message, pack_plain(message))
            return
        if kind == EXIT:
            self.close(message)
            return
        writer.add(message)

    def tick(self, force: bool = False) -> None:
        """On the server's tick: write if due."""
        writer = self.writer
        if writer is None or self.closed:
            return
        writer.flush(force=force)
        if writer.failed is not None:
            self._stop(f"{writer.failed}; the recording stops there (what was written is kept)")

    def _keep_sources(self, ids: list[int]) -> None:
        """These calls' payloads stored now, as their events come and before their rows (not at the
        tick: a burst of calls moves the ring on meanwhile, and a killed job's file holds each row
        with its payload)."""
        for start in range(0, len(ids), PAYLOAD_BATCH):
            batch = ids[start : start + PAYLOAD_BATCH]
            if start and self.handoff is not None:
                self.handoff.back()
            self._pack_now(batch)

    def _pack_now(self, batch: list[int]) -> None:
        """These calls' payloads packed in C, from the ring's slots (no copy of each, which cost a
        call about a microsecond); those the Python pass must build, from copies."""
        packed = None
        if self.packed_payloads is not None:
            try:
                packed = self.packed_payloads(batch)
            except Exception:
                packed = None
        if packed is None:  # not done in C: all by the Python pass
            self._store(list(zip(batch, self.payloads_of(batch))))
            return
        if packed.ids:
            self.writer.add_packed_payloads(packed.ids, packed.data, packed.ends)
        python = packed.python
        self._store(list(zip(python, self.payloads_of(python))) if python else [], packed.gone)

    def _store(self, kept: list[tuple[int, Any]], missing: int = 0) -> None:
        """(call id, kept call) pairs built by the Python pass and stored; those the ring no longer
        held (None), or that cannot be built, counted as missing."""
        payloads: list[tuple[int, Any]] = []
        payload_of = self.payload_of
        for call_id, source in kept:
            if source is None:
                missing += 1  # the ring had moved on (more calls between two drains than it holds)
                continue
            try:
                payloads.append((call_id, payload_of(source)))
            except Exception:
                missing += 1
        if payloads:
            self.writer.add_payloads(payloads)
        self.writer.count_missing_payloads(missing)

    def close(self, exit_message: dict[str, Any] | None = None) -> None:
        """At exit: the exit message, the final checkpoint and the index."""
        writer = self.writer
        if writer is None or self.closed:
            return
        self.closed = True
        writer.close(exit_message)

    def abandon_after_fork(self) -> None:
        """In a forked child: let go of the parent's file (the child records its own)."""
        self.closed = True
        if self.writer is not None:
            self.writer.abandon_after_fork()

    def _stop(self, reason: str) -> None:
        """The recording ends here (the file keeps what was written); said once on stderr."""
        if self.failed is None:
            self.failed = reason
            self.warn(reason)
        self.closed = True
        if self.writer is not None:
            self.writer.close()  # releases the file (a failed writer writes nothing more)
