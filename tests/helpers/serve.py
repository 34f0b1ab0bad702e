"""The test side of `dspy-top serve`: the real command in a subprocess, its log lines, its /metrics parsed,
and `serve_job.py` jobs (real DSPy programs, instrumented, against a simulated LM).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from tests.helpers.job_process import REPO, JobSubprocess
from tests.helpers.waiting import wait_until

SERVE_JOB = REPO / "tests" / "jobs" / "serve_job.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float = 60.0, what: str = "condition", every: float = 0.1):
    """`wait_until`, polling the agent's or an engine's answers every `every` seconds."""
    return wait_until(condition, what, timeout, every)


class Serve:
    """One `dspy-top serve` process watching `runtime`; its log lines are collected as they come."""

    def __init__(self, runtime: Path, *args: str, env: dict[str, str] | None = None) -> None:
        environment = {**os.environ, "DSPY_TOP_RUNTIME_DIR": str(runtime), "PYTHONPATH": str(REPO), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dspy_top", "serve", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=environment,
            cwd=str(REPO),
        )
        self.lines: list[str] = []
        self._new: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))
        self.lines.append("<eof>")

    def log(self) -> str:
        return "\n".join(self.lines)

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match:
        """The first log line matching `pattern` (a regular expression), waiting for it."""
        regex = re.compile(pattern)

        def found():
            for line in list(self.lines):
                match = regex.search(line)
                if match:
                    return match
            return None

        try:
            return wait_for(found, timeout, f"a log line matching {pattern!r}", every=0.05)
        except AssertionError:
            raise AssertionError(f"no log line matching {pattern!r}; the log:\n{self.log()}") from None

    @property
    def metrics_url(self) -> str:
        address = self.expect(r"serving Prometheus metrics at http://(\S+)/metrics").group(1)
        return f"http://{address}/metrics"

    def scrape(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=10) as answer:
            return answer.read().decode()

    def samples(self, name: str, **labels: str) -> dict[tuple, float]:
        """{sorted label items: value} of one sample name in a scrape, filtered by `labels`."""
        from prometheus_client.parser import text_string_to_metric_families

        out = {}
        for family in text_string_to_metric_families(self.scrape()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    out[tuple(sorted(sample.labels.items()))] = sample.value
        return out

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)


class ServeJob(JobSubprocess):
    """tests/jobs/serve_job.py: instrumented, its LM the simulated one at `sim_url`."""

    def __init__(self, runtime: Path, sim_url: str, *args: str, env: dict[str, str] | None = None) -> None:
        super().__init__(
            [sys.executable, str(SERVE_JOB), *args],
            cwd=runtime.parent,
            stderr_path=runtime.parent / f"serve-job-{time.monotonic_ns()}.err",
            env={
                "DSPY_TOP_RUNTIME_DIR": str(runtime),
                "SIM_URL": sim_url,
                "PYTHONPATH": str(REPO),
                "DSPY_CACHEDIR": str(runtime.parent / f"cache-{time.monotonic_ns()}"),
                "DSPY_TOP_CONFIG": str(runtime.parent / "no-config.toml"),
                **(env or {}),
            },
        )

    def truth(self, timeout: float = 120.0) -> dict:
        """The job's own exact stats once its work is done (it then waits for `finish`)."""
        return json.loads(self.answer("TRUTH", timeout))

    def finish(self, timeout: float = 30.0) -> int:
        return self.exit(timeout)
