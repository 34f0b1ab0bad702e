"""The test side of tests/jobs/line_job.py, and raw viewers that read a socket as the viewer does."""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

from dspy_top import protocol
from tests.helpers.job_process import REPO, JobSubprocess

LINE_JOB = REPO / "tests" / "jobs" / "line_job.py"


class LineJob(JobSubprocess):
    """One line_job.py process (or another `SCRIPT` that prints READY first): send it commands, read its answers."""

    SCRIPT = LINE_JOB

    def __init__(self, runtime: Path, *args, env: dict[str, str] | None = None) -> None:
        super().__init__(
            [sys.executable, str(self.SCRIPT), *args],
            drop=("DSPY_TOP", "PYTHONUNBUFFERED"),
            stderr_path=runtime.parent / f"stderr-{time.monotonic_ns()}",
            env={
                "DSPY_TOP_RUNTIME_DIR": str(runtime),
                "PYTHONPATH": str(REPO),
                "DSPY_TOP_CONFIG": str(runtime.parent / "no-config.toml"),
                **(env or {}),
            },
        )
        self.ready(self.expect("READY"))

    def ready(self, line: list[str]) -> None:
        """The job's READY line: its socket."""
        self.socket_path = Path(line[1])

    def expect(self, word: str, timeout: float = 90) -> list[str]:
        return self.next(word, timeout)

    def ask(self, line: str, answer: str) -> list[str]:
        self.send(line)
        return self.expect(answer)

    def run(self, calls: int) -> dict:
        return json.loads(" ".join(self.ask(f"run {calls}", "TRUTH")[1:]))


def raw_connect(path: Path, timeout: float = 5.0) -> socket.socket:
    """A viewer's socket, connected the way client.Connection connects (a timeout set)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(str(path))
    return sock


def read_all(sock: socket.socket, timeout: float = 60.0) -> list[dict]:
    """Every message until the process closes the connection (or `timeout`)."""
    reader = protocol.FrameReader()
    messages: list[dict] = []
    deadline = time.monotonic() + timeout
    sock.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            continue
        except OSError:
            break
        if not data:
            break
        messages.extend(reader.feed(data))
    return messages


def calls_in(messages: list[dict]) -> list[int]:
    """The call ids a viewer received: in its snapshot, `calls` batches and single `call` messages."""
    ids = []
    for message in messages:
        if message["t"] == "snapshot":
            ids.extend(call["id"] for call in message["calls"])
        elif message["t"] == "calls":
            at = list(message["fields"]).index("id")
            ids.extend(row[at] for row in message["rows"])
        elif message["t"] == "call":
            ids.append(message["id"])
    return ids
