"""The one base of the tests' job processes: a script in a subprocess that prints words (READY, TRUTH, DONE ...) at
the start of its lines and takes commands on stdin.

A thread collects its stdout lines as they come, so a wait gives up on time even when the job hangs; its stderr
goes to a file, quoted when a wait fails. `find` looks through every line so far (a word may be looked for twice);
`next` takes the lines in order, as a reader of the pipe would.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


class JobSubprocess:
    """One job subprocess: `argv` with `env` over this process's environment, less the variables in `drop`."""

    def __init__(
        self,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        drop: Iterable[str] = ("DSPY_TOP",),
        cwd: Path | str | None = None,
        stderr_path: Path | None = None,
    ) -> None:
        environment = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", **(env or {})}
        for name in drop:
            if name not in (env or {}):
                environment.pop(name, None)
        self._own_stderr = stderr_path is None  # a file of its own, removed once the job has ended well
        if stderr_path is None:
            descriptor, name = tempfile.mkstemp(prefix="dt-job-", suffix=".err")
            os.close(descriptor)
            stderr_path = Path(name)
        self.stderr_path = stderr_path
        self._kept_stderr: str | None = None
        self._stderr = open(stderr_path, "w")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
            errors="replace",
            env=environment,
            cwd=None if cwd is None else str(cwd),
        )
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._taken = 0  # lines `next` has gone past
        self._ended = False
        self._seen = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                self._seen.notify_all()
        with self._seen:
            self._ended = True
            self._seen.notify_all()

    @property
    def stderr(self) -> str:
        if self._kept_stderr is not None:
            return self._kept_stderr
        return self.stderr_path.read_text()

    def find(self, word: str, timeout: float = 60.0, after: int = 0) -> tuple[int, list[str]]:
        """The first line from line `after` on whose first word is `word`: (its index, its words)."""
        deadline = time.monotonic() + timeout
        with self._seen:
            while True:
                for index in range(after, len(self.lines)):
                    words = self.lines[index].split()
                    if words and words[0] == word:
                        return index, words
                after = max(after, len(self.lines))
                if self._ended:
                    raise AssertionError(f"the job ended before {word}: {self.stderr[-3000:]}")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"no {word} within {timeout:g}s; stderr: {self.stderr[-3000:]}")
                self._seen.wait(min(remaining, 0.5))

    def next(self, word: str, timeout: float = 60.0) -> list[str]:
        """The next line whose first word is `word`, past the last one `next` returned (lines between are skipped)."""
        index, words = self.find(word, timeout, after=self._taken)
        self._taken = index + 1
        return words

    def answer(self, word: str, timeout: float = 60.0) -> str:
        """What follows `word` on the next line that starts with it (a JSON document), exactly as printed."""
        index, _ = self.find(word, timeout, after=self._taken)
        self._taken = index + 1
        return self.lines[index].partition(" ")[2]

    def output(self, timeout: float = 10.0) -> list[str]:
        """Every line the job printed, once its stdout has closed."""
        with self._seen:
            if not self._seen.wait_for(lambda: self._ended, timeout):
                raise AssertionError(f"the job's output did not end within {timeout:g}s")
            return list(self.lines)

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def exit(self, timeout: float = 30.0) -> int:
        """Ask the job to end (`exit`) and wait for it; its status."""
        try:
            self.send("exit")
        except (BrokenPipeError, OSError):
            pass
        status = self.proc.wait(timeout)
        self._let_go()
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._let_go()

    def _let_go(self) -> None:
        self._stderr.close()
        if self._own_stderr and self._kept_stderr is None:
            self._kept_stderr = self.stderr_path.read_text()  # still there to quote once the file is gone
            self.stderr_path.unlink(missing_ok=True)
