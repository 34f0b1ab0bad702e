"""Recorded jobs for the recording tests: tests/jobs/record_job.py on the simulated LM, and what
its recording holds (every message, every payload, decoded), read back with the real reader."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from dspy_top import protocol
from dspy_top.recording import Recording

REPO = Path(__file__).resolve().parents[2]
RECORD_JOB = REPO / "tests" / "jobs" / "record_job.py"


class RecordJob:
    """One record_job.py process: send it commands, read its answers."""

    def __init__(self, tmp: Path, sim_url: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.runtime = Path(tempfile.mkdtemp(prefix="dtr", dir="/tmp"))  # AF_UNIX paths are short
        environment = {**os.environ, "SIM_URL": sim_url, "DSPY_TOP_RUNTIME_DIR": str(self.runtime),
                       "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(REPO),
                       "DSPY_TOP_CONFIG": str(tmp / "no-config.toml"), "DSPY_TOP_STATE_DIR": str(tmp / "state"),
                       **(env or {})}
        environment.pop("DSPY_TOP", None)
        self.stderr_path = tmp / f"job-{time.monotonic_ns()}.err"
        self.proc = subprocess.Popen([sys.executable, str(RECORD_JOB), *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=open(self.stderr_path, "w"), env=environment,
                                     text=True)
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        _, socket_path, recording = self.expect("READY")
        self.socket_path = Path(socket_path)
        self.recording = None if recording == "None" else Path(recording)
        self.pid = self.proc.pid

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line.split())
        self._lines.put(None)

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def expect(self, word: str, timeout: float = 120) -> list[str]:
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
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def run(self, calls: int) -> int:
        """`calls` program calls (2 LM calls each); this process's LM calls so far."""
        self.send(f"run {calls}")
        return int(self.expect("DONE")[1])

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


def poll_until(predicate, what: str, timeout: float = 30.0, every: float = 0.1):
    """The predicate's first true value, polled with a generous deadline (never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(every)


def calls_of(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every call event in a recording's (or a viewer's) messages, as `call` maps."""
    found = []
    for message in messages:
        if message["t"] == "calls":
            found.extend(protocol.call_dicts(message["fields"], message["rows"]))
        elif message["t"] == "call":
            found.append(message)
        elif message["t"] == "snapshot":
            found.extend(message.get("calls") or ())
    return found


def everything(path: Path) -> tuple[list[dict[str, Any]], dict[int, Any]]:
    """A recording's messages and the payload of each of its calls, decoded."""
    with Recording(path) as recording:
        messages = list(recording.messages())
        payloads = {call["id"]: recording.payload(call["id"]) for call in calls_of(messages)}
    return messages, payloads


def decoded_text(path: Path) -> str:
    """All a recording holds, as text: its raw bytes, and every message and payload decoded."""
    messages, payloads = everything(path)
    with Recording(path) as recording:
        header = recording.header
    return (path.read_bytes().decode("utf-8", "replace") + json.dumps(header, default=str)
            + json.dumps(messages, default=str) + json.dumps(payloads, default=str))
