"""What leaves the process: each message redacted once, handed to the taps, encoded once into the stream.

Used on the server thread only (server.py). Redaction (redact.py) is the one pass for everything
that leaves the process, to the viewers and to disk alike. Another consumer of the same events
(a recording written to a file) is a tap: each redacted message that goes into the stream
(events, `calls` batches, stats, exit) is handed to every callable in `taps` first, so it sees
every event, never falls behind and never gets a credential. Nothing is encoded while no viewer
reads the stream (`streaming`, the server's answer). Call rows are redacted at almost no cost
per row (`clean_rows`): a busy job sends thousands a second.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from typing import Any

from dspy_top import protocol
from dspy_top.instrumentation.recorder import Recorder
from dspy_top.instrumentation.redact import Redactor
from dspy_top.instrumentation.stream import CALLS, KEPT, FrameStream

CALLS_PER_FRAME = 500
# Text limits of what goes out besides payloads (which keep 256 KiB per string).
EVENT_TEXT = 4096
# Call rows: the error message and the names that are redacted (protocol.CALL_FIELDS).
ERROR_AT = protocol.CALL_FIELDS.index("error_message")
NAMES_AT = tuple(protocol.CALL_FIELDS.index(name) for name in ("path", "model", "response_model"))
RESPONSE_MODEL_AT = protocol.CALL_FIELDS.index("response_model")
_ERROR_OF = operator.itemgetter(ERROR_AT)
_RESPONSE_MODEL_OF = operator.itemgetter(RESPONSE_MODEL_AT)


class Publisher:
    """The redacted, encoded stream every viewer reads, and the taps that see each message first."""

    def __init__(self, recorder: Recorder, stream_limit: int, streaming: Callable[[], bool]) -> None:
        self.recorder = recorder
        self.stream = FrameStream(stream_limit)
        self.redactor = Redactor()
        self.streaming = streaming  # whether anyone reads the encoded stream (else nothing is encoded)
        # Called with each redacted message as it goes into the stream (see the module docstring).
        self.taps: list[Callable[[dict[str, Any]], None]] = []
        # Call rows are checked without per-row work where it can be avoided (see clean_rows).
        self._names_checked = (-1, 0)  # (redactor generation, cells checked)
        self._names_clean = True
        self._clean_models: set[str | None] = {None}

    def publish(self, events: list[dict[str, Any] | tuple]) -> None:
        """Drained events into the stream (and to the taps), consecutive calls batched."""
        rows: list[tuple] = []
        for event in events:
            if type(event) is tuple:  # a call event, as a CALL_FIELDS row
                rows.append(event)
                if len(rows) >= CALLS_PER_FRAME:
                    self.publish_calls(rows)
                    rows = []
                continue
            if rows:
                self.publish_calls(rows)
                rows = []
            frame = self.encode(event, event.get("t"), tap=True)
            if frame is None:
                continue
            if event["t"] in (protocol.TOOL, protocol.EVAL_PROGRESS):
                self.stream.append(frame, CALLS, 1)
            else:
                self.stream.append(frame, KEPT)
        if rows:
            self.publish_calls(rows)

    def publish_calls(self, rows: list[tuple]) -> None:
        """Consecutive call events go out as one `calls` frame: far cheaper to encode and decode."""
        message = {"t": protocol.CALLS, "fields": protocol.CALL_FIELDS, "rows": self.clean_rows(rows)}
        if self.taps:
            self.tap(message)
            if not self.streaming():
                return
        try:
            frame = protocol.encode(message)
        except protocol.ProtocolError:
            # Over the frame limit: the batch is lost for every viewer, counted (an empty frame
            # each viewer counts as dropped calls), and the server goes on.
            self.recorder.count_internal_error()
            self.stream.append(b"", CALLS, len(rows))
            return
        self.stream.append(frame, CALLS, len(rows))

    def clean_rows(self, rows: list[tuple]) -> list[tuple]:
        """The rows redacted, at almost no cost per row: a row's path and model are those of
        its (path, model) cell, each checked once when the cell appears, so per row only
        its error message (rare) and its response model (a set lookup) are looked at."""
        redactor = self.redactor
        cells = self.recorder.cells
        generation, checked = self._names_checked
        if generation != redactor.generation:
            checked, self._names_clean, self._clean_models = 0, True, {None}
        if len(cells) != checked:
            keys = list(cells)  # one C call: safe while the job's threads add cells
            self._names_clean = self._names_clean and all(
                redactor.is_plain(name) for key in keys[checked:] for name in key if isinstance(name, str)
            )
            self._names_checked = (redactor.generation, len(keys))
        if not self._names_clean:
            return [self.redact_row(row) for row in rows]
        clean_models = self._clean_models
        # The usual batch: no error, known response models; looked at in C, the rows kept as they are.
        if not any(map(_ERROR_OF, rows)) and clean_models.issuperset(map(_RESPONSE_MODEL_OF, rows)):
            return rows
        return [
            row if not row[ERROR_AT] and row[RESPONSE_MODEL_AT] in clean_models else self.redact_row(row)
            for row in rows
        ]

    def redact_row(self, row: tuple) -> tuple:
        model = row[RESPONSE_MODEL_AT]
        if type(model) is str and len(self._clean_models) < 1000 and self.redactor.is_plain(model):
            self._clean_models.add(model)
        return self.redactor.row(row, ERROR_AT, NAMES_AT)

    def encode(
        self, message: dict[str, Any], what: Any, limit: int | None = EVENT_TEXT, tap: bool = False
    ) -> bytes | None:
        """`message` redacted (and, with `tap`, handed to the taps) and encoded; None if it cannot be
        sent (counted), or, with `tap`, when no viewer reads the stream."""
        try:
            message = self.redact(message, what, limit or 256 * 1024)
        except Exception:
            self.recorder.count_internal_error()
            return None
        if tap and self.taps:
            self.tap(message)
        if tap and not self.streaming():
            return None
        try:
            return protocol.encode(message)
        except Exception:
            self.recorder.count_internal_error()
            return None

    def redact(self, message: dict[str, Any], what: Any, limit: int) -> dict[str, Any]:
        if what == protocol.HELLO:
            message = {**message, "argv": self.redactor.argv(message.get("argv") or [])}
        return self.redactor.value(message, limit)

    def tap(self, message: dict[str, Any]) -> None:
        for tap in self.taps:
            try:
                tap(message)
            except Exception:  # a consumer's failure is its own, never the viewers'
                self.recorder.count_internal_error()

    # --- what a newcomer gets before the stream ------------------------------------------------

    def hello_frame(self, hello: Callable[[], dict[str, Any]]) -> bytes:
        """The encoded hello for a new viewer: never missing, even if building it failed."""
        try:
            frame = self.encode(hello(), protocol.HELLO)
        except Exception:
            self.recorder.count_internal_error()
            frame = None
        if frame is None:
            frame = protocol.encode({"t": protocol.HELLO, "v": protocol.PROTOCOL_VERSION, "pid": os.getpid()})
        return frame

    def redacted_hello(self, hello: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """The process's hello as it leaves the process (for a consumer that is not a viewer)."""
        try:
            message = self.redact(hello(), protocol.HELLO, EVENT_TEXT)
        except Exception:
            self.recorder.count_internal_error()
            message = None
        return message or {"t": protocol.HELLO, "v": protocol.PROTOCOL_VERSION, "pid": os.getpid()}

    def snapshot_message(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        """A `snapshot` message, redacted, from `Recorder.drain_and_snapshot`'s snapshot."""
        stats = self.redactor.value(snapshot["stats"], EVENT_TEXT)
        rows = [self.redact_row(row) for row in snapshot["rows"]]
        return {
            "t": protocol.SNAPSHOT,
            "stats": stats,
            "seq": snapshot["seq"],
            "calls": protocol.call_dicts(protocol.CALL_FIELDS, rows),
        }

    def snapshot_frame(self, snapshot: dict[str, Any]) -> bytes:
        """The encoded `snapshot` for a new viewer: the newest calls that fit in a frame."""
        stats = self.redactor.value({**snapshot["stats"], "dropped_viewer": 0}, EVENT_TEXT)
        rows = [self.redact_row(row) for row in snapshot["rows"]]
        while True:
            try:
                return protocol.encode(
                    {
                        "t": protocol.SNAPSHOT,
                        "stats": stats,
                        "seq": snapshot["seq"],
                        "calls": protocol.call_dicts(protocol.CALL_FIELDS, rows),
                    }
                )
            except protocol.ProtocolError:
                # Too large (a long history of long error messages): the newest calls that fit.
                self.recorder.count_internal_error()
                if not rows:
                    return protocol.encode(
                        {
                            "t": protocol.SNAPSHOT,
                            "seq": snapshot["seq"],
                            "calls": [],
                            "stats": {"totals": stats.get("totals"), "dropped_viewer": 0},
                        }
                    )
                rows = rows[len(rows) // 2 + 1 :] if len(rows) > 1 else []
