"""`dspy-top` in a real terminal: tmux at a fixed size; send keys, read the screen, exit cleanly.

No fixed sleeps: every step polls `capture-pane` for a marker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.helpers.jobs import REPO, runtime_dir, start_job

pytestmark = [pytest.mark.timeout(90),
              pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")]


class Tmux:
    def __init__(self) -> None:
        self.server = f"dspy-top-test-{os.getpid()}"
        self.session = "viewer"

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.server, *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.session)

    def wait_for(self, predicate, what: str, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; screen was:\n{screen}")

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.session, *keys)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.server, "kill-server"], capture_output=True, timeout=10)


def test_dspy_top_in_tmux_shows_the_job_takes_keys_and_exits_cleanly():
    directory = runtime_dir()
    job = start_job(directory)
    tmux = Tmux()
    status = directory / "status"
    try:
        truth = job.run(3)
        calls = truth["totals"]["calls"]
        command = (f"cd {REPO} && unset COLUMNS LINES && DSPY_TOP_RUNTIME_DIR={directory} TERM=xterm-256color "
                   f"{sys.executable} -m dspy_top -d 0.3; echo $? > {status}; echo VIEWER-EXITED; sleep 30")
        tmux.run("new-session", "-d", "-s", tmux.session, "-x", "100", "-y", "30", command)
        screen = tmux.wait_for(lambda s: f"{calls} calls" in s and "RAG.answer" in s, "the job's calls")
        assert "dspy-top" in screen and str(job.pid) in screen, screen

        tmux.keys("?")
        tmux.wait_for(lambda s: "Everywhere" in s and "sort by the previous" in s, "the help screen")
        tmux.keys("Escape")
        tmux.wait_for(lambda s: "Everywhere" not in s and "Modules" in s, "the main screen again")

        tmux.keys("Space")
        tmux.wait_for(lambda s: "PAUSED" in s, "the paused header")
        tmux.keys("Space")
        tmux.wait_for(lambda s: "PAUSED" not in s, "resumed")

        more = job.run(2)
        tmux.wait_for(lambda s: f"{more['totals']['calls']} calls" in s, "live updates")

        tmux.keys("q")
        deadline = time.monotonic() + 15
        while not status.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status.read_text().strip() == "0"
        # Textual draws on stderr, so a traceback would be on the pane after the app left it.
        screen = tmux.wait_for(lambda s: "VIEWER-EXITED" in s, "the shell after the viewer")
        assert "Traceback" not in screen
    finally:
        tmux.kill()
        job.kill()
