"""A recording of a real instrumented job made from the outside: a viewer on its socket writes what it serves.

What the job's socket serves (hello, snapshot, every event, `calls` batch, `stats`, the exit)
goes into a real `RecordingWriter` as the job's own server thread would write it, flushed
every quarter second, and each call's payload is asked for as its call event arrives. For
the replay's tests, before jobs record themselves (`DSPY_TOP_RECORD`).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path
from typing import Any

from dspy_top import client, protocol
from dspy_top.recording import RecordingWriter


class SocketRecording:
    """Records the process serving `socket_path` into `path` until its exit message, in a thread."""

    def __init__(self, socket_path: Path | str, path: Path) -> None:
        self.path = path
        self.connection = client.Connection(socket_path, batches=True)
        fields = dataclasses.asdict(self.connection.connect())
        self.writer = RecordingWriter.create(path, {"t": "hello", "v": fields.pop("version"), **fields})
        self.messages: list[dict[str, Any]] = []  # everything written, in order
        self.payloads: dict[int, dict[str, Any]] = {}
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="socket-recording", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while True:
                wanted: list[int] = []
                for message in self.connection.poll(timeout=0.25):
                    if message["t"] == protocol.PAYLOAD:
                        continue
                    self.messages.append(message)
                    if message["t"] == protocol.EXIT:  # the process is gone: payloads not asked for yet are too
                        self.writer.close(message)
                        return
                    self.writer.add(message)
                    if message["t"] == "calls":
                        wanted += [call["id"] for call in protocol.call_dicts(message["fields"], message["rows"])]
                self._payloads(wanted)
                self.writer.flush()
        except BaseException as exc:  # the test says so (`wait`)
            self.error = exc
            self.writer.close()
        finally:
            self.connection.close()

    def _payloads(self, ids: list[int]) -> None:
        for call_id in ids:
            payload = self.connection.get_payload(call_id)
            if payload is not None:
                self.payloads[call_id] = payload
                self.writer.add_payload(call_id, payload)

    def wait_calls(self, count: int, timeout: float = 60.0) -> None:
        """Until `count` calls were written with their payloads (before the job is told to exit)."""
        deadline = time.monotonic() + timeout
        while len(self.payloads) < count:
            if time.monotonic() > deadline or self.error is not None:
                raise AssertionError(f"{len(self.payloads)} of {count} calls recorded ({self.error!r})")
            time.sleep(0.02)

    def wait(self, timeout: float = 60.0) -> Path:
        """The recording, once the job's exit was written (and the file closed)."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"the job's exit never came ({timeout:g}s)")
        if self.error is not None:
            raise AssertionError(f"recording the job failed: {self.error!r}")
        return self.path
