"""The test side of tests/jobs/line_job.py, and raw viewers that read a socket as the viewer does."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from dspy_top import protocol

REPO = Path(__file__).resolve().parents[2]
LINE_JOB = REPO / "tests" / "jobs" / "line_job.py"


class LineJob:
    """One line_job.py process (or another `SCRIPT` that prints READY first): send it commands, read its answers."""

    SCRIPT = LINE_JOB

    def __init__(self, runtime: Path, *args, env: dict[str, str] | None = None) -> None:
        environment = {**os.environ, "DSPY_TOP_RUNTIME_DIR": str(runtime), "LITELLM_LOCAL_MODEL_COST_MAP": "True",
                       "PYTHONPATH": str(REPO), "DSPY_TOP_CONFIG": str(runtime.parent / "no-config.toml"),
                       **(env or {})}
        for name in ("DSPY_TOP", "PYTHONUNBUFFERED"):
            environment.pop(name, None)
        self.stderr_path = runtime.parent / f"stderr-{time.monotonic_ns()}"
        self.proc = subprocess.Popen([sys.executable, str(self.SCRIPT), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(self.stderr_path, "w"), env=environment)
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.ready(self.expect("READY"))
        self.pid = self.proc.pid

    def ready(self, line: list[str]) -> None:
        """The job's READY line: its socket."""
        self.socket_path = Path(line[1])

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line.decode("utf-8", "replace").split())
        self._lines.put(None)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def expect(self, word: str, timeout: float = 90) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                parts = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no {word} within {timeout}s; stderr: {self.stderr[-3000:]}") from None
            if parts is None:
                raise AssertionError(f"the job ended before {word}: {self.stderr[-3000:]}")
            if parts and parts[0] == word:
                return parts

    def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def ask(self, line: str, answer: str) -> list[str]:
        self.send(line)
        return self.expect(answer)

    def run(self, calls: int) -> dict:
        return json.loads(" ".join(self.ask(f"run {calls}", "TRUTH")[1:]))

    def exit(self, timeout: float = 30) -> int:
        try:
            self.send("exit")
        except (BrokenPipeError, OSError):
            pass
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


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
