"""`python -m dspy_top relay` on pipes, as another tool would run it: its frames read by a thread
into a queue (`RelayProcess`), and the hello exchanged (`greeted`)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from dspy_top import protocol
from dspy_top.sources import relay_wire as wire
from tests.helpers.jobs import REPO


class RelayProcess:
    """`python -m dspy_top relay` on pipes; its frames read by a thread into a queue."""

    def __init__(self, directory: Path, *args: str) -> None:
        env = {**os.environ, "DSPY_TOP_RUNTIME_DIR": str(directory), "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dspy_top", "relay", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=str(REPO),
        )
        self.frames: queue.Queue = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        reader = protocol.FrameReader(wire.MAX_FRAME)
        while True:
            data = self.proc.stdout.read1(1 << 16)
            if not data:
                self.frames.put(None)
                return
            for frame in reader.feed(data):
                self.frames.put(frame)

    def send(self, frame: dict) -> None:
        self.proc.stdin.write(wire.encode(frame, wire.MAX_REQUEST))
        self.proc.stdin.flush()

    def next(self, timeout: float = 30.0) -> dict | None:
        frame = self.frames.get(timeout=timeout)
        if frame is not None:
            self.seen.append(frame)
        return frame

    def until(self, test, what: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            frame = self.next(max(0.01, deadline - time.monotonic()))
            if frame is None:
                raise AssertionError(f"the relay ended before {what}: {self.proc.stderr.read().decode()[-2000:]}")
            if test(frame):
                return frame

    def close(self) -> int:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            return self.proc.wait(10)
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()


def greeted(relay: RelayProcess, version: int = wire.RELAY_VERSION) -> dict:
    hello = relay.next()
    relay.send({"t": wire.HELLO, "v": version, "client": "tests"})
    return hello
