"""Recorded jobs for the recording tests: tests/jobs/record_job.py on the simulated LM, and what
its recording holds (every message, every payload, decoded), read back with the real reader."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from dspy_top import protocol
from dspy_top.recording import Recording
from tests.helpers.line_jobs import REPO, LineJob

RECORD_JOB = REPO / "tests" / "jobs" / "record_job.py"


class RecordJob(LineJob):
    """One record_job.py process on the simulated LM at `sim_url`; its state dir and config in `tmp`."""

    SCRIPT = RECORD_JOB

    def __init__(self, tmp: Path, sim_url: str, *args: str, env: dict[str, str] | None = None) -> None:
        runtime = Path(tempfile.mkdtemp(prefix="dtr", dir="/tmp"))  # AF_UNIX paths are short
        super().__init__(
            runtime,
            *args,
            env={
                "SIM_URL": sim_url,
                "DSPY_TOP_CONFIG": str(tmp / "no-config.toml"),
                "DSPY_TOP_STATE_DIR": str(tmp / "state"),
                **(env or {}),
            },
        )

    def ready(self, line: list[str]) -> None:
        """READY <socket> <recording, or None>."""
        super().ready(line)
        self.recording = None if line[2] == "None" else Path(line[2])

    def run(self, calls: int) -> int:
        """`calls` program calls (2 LM calls each); this process's LM calls so far."""
        return int(self.ask(f"run {calls}", "DONE")[1])


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
    return (
        path.read_bytes().decode("utf-8", "replace")
        + json.dumps(header, default=str)
        + json.dumps(messages, default=str)
        + json.dumps(payloads, default=str)
    )
