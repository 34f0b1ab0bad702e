"""DSPy jobs started without dspy-top (tests/jobs/plain_job.py), for the `dspy-top attach` tests.

`PlainJob` starts one against a simulated LM and reads its line protocol; `dspy_top` runs the
real `dspy-top` command; `job_stats` reads the exact counters the attached job serves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from dspy_top import client
from tests.helpers.job_process import REPO, JobSubprocess

JOB = REPO / "tests" / "jobs" / "plain_job.py"


class PlainJob(JobSubprocess):
    """One plain job subprocess: nothing of dspy-top in its environment; a word may be looked for twice."""

    def __init__(self, mode: str, n: int, sim_url: str, directory: Path, env: dict | None = None) -> None:
        self.directory = directory
        super().__init__(
            [sys.executable, str(JOB), mode, str(n)],
            cwd=directory,
            drop=("DSPY_TOP", "PYTHONPATH", "DSPY_TOP_RUNTIME_DIR"),  # nothing of dspy-top in the job
            stderr_path=directory / f"job-{mode}-{time.monotonic_ns()}.err",
            env={"SIM_URL": sim_url, "DSPY_CACHEDIR": str(directory / "cache"), **(env or {})},
        )
        self.pid = int(self.expect("READY").split()[1])

    def expect(self, word: str, timeout: float = 120.0, after: int = 0) -> str:
        """The first line from line `after` on that starts with `word`."""
        return self.lines[self.find(word, timeout, after)[0]]

    def result(self, timeout: float = 120.0):
        return json.loads(self.expect("RESULT", timeout).split(" ", 1)[1])

    def status(self) -> dict:
        start = len(self.lines)
        self.send("status")
        return json.loads(self.expect("STATUS", 30.0, after=start).split(" ", 1)[1])

    def stderr_has(self, text: str) -> bool:
        return text in self.stderr

    def close(self) -> int | None:
        try:
            if self.proc.poll() is None:
                self.exit(20)
        except (OSError, subprocess.TimeoutExpired):
            self.kill()
        finally:
            self._stderr.close()
        return self.proc.returncode


def dspy_top(*args: str, runtime_dir: Path, env: dict | None = None, timeout: float = 90.0):
    """`dspy-top ARGS` as a user runs it; the finished process (returncode, stdout, stderr)."""
    environment = {**os.environ, "DSPY_TOP_RUNTIME_DIR": str(runtime_dir), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "dspy_top", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=str(REPO),
    )


def job_stats(socket_path: Path, settled: bool = True, timeout: float = 30.0) -> dict:
    """The job's exact stats; with `settled`, once the calls in flight at the attach are all counted."""
    deadline = time.monotonic() + timeout
    stats: dict = {}
    while time.monotonic() < deadline:
        with client.Connection(socket_path, timeout=5.0) as connection:
            for message in connection.events(timeout=5.0):
                if message.get("t") == "snapshot":
                    stats = message["stats"]
                    break
        before = stats.get("before_attach") or {}
        if not settled or before.get("settled"):
            return stats
        time.sleep(0.2)
    raise TimeoutError(f"stats never settled: {stats.get('before_attach')}")


def unix_socket_fds(pid: int) -> int:
    """How many Unix-domain sockets the process holds (dspy-top's listener and wake-up pair are)."""
    unix = set()
    with open(f"/proc/{pid}/net/unix") as table:
        next(table)
        for line in table:
            unix.add(line.split()[6])
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in unix:
            count += 1
    return count
