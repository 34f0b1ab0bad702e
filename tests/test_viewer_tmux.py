"""`dspy-top` in a real terminal: tmux at a fixed size; send keys, read the screen, exit cleanly.

No fixed sleeps: every step polls `capture-pane` for a marker.
"""

from __future__ import annotations

import sys

import pytest

from tests.helpers.jobs import REPO, runtime_dir, start_job
from tests.jobs.terminal import SKIP_REASON, Terminal

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or ""),
    pytest.mark.slow,
]


def test_dspy_top_in_tmux_shows_the_job_takes_keys_and_exits_cleanly():
    directory = runtime_dir()
    job = start_job(directory)
    tmux = None
    try:
        truth = job.run(3)
        calls = truth["totals"]["calls"]
        tmux = Terminal(
            [sys.executable, "-m", "dspy_top", "-d", "0.3"],
            directory / "status",
            cwd=REPO,
            env={"DSPY_TOP_RUNTIME_DIR": str(directory)},
            width=100,
            height=30,
        )
        screen = tmux.wait_for(lambda s: f"{calls} calls" in s and "RAG.answer" in s, "the job's calls")
        assert "dspy-top" in screen and str(job.pid) in screen, screen

        tmux.keys("?")
        tmux.wait_for(lambda s: "Everywhere" in s and "this help" in s, "the help screen")
        tmux.keys("Escape")
        tmux.wait_for(lambda s: "Everywhere" not in s and "Modules" in s, "the main screen again")

        tmux.keys("Space")
        tmux.wait_for(lambda s: "PAUSED" in s, "the paused header")
        tmux.keys("Space")
        tmux.wait_for(lambda s: "PAUSED" not in s, "resumed")

        more = job.run(2)
        tmux.wait_for(lambda s: f"{more['totals']['calls']} calls" in s, "live updates")

        tmux.keys("q")
        assert tmux.exit_status(timeout=15) == 0
        # Textual draws on stderr, so a traceback would be on the pane after the app left it.
        screen = tmux.wait_for(
            lambda s: "dspy-top" not in s.splitlines()[0] if s.strip() else True, "the shell after the viewer"
        )
        assert "Traceback" not in screen
    finally:
        if tmux is not None:
            tmux.close()
        job.kill()
