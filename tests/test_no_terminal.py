"""The live view started without a terminal says so and exits 2, instead of writing escape codes forever."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers.jobs import REPO, runtime_dir

pytestmark = pytest.mark.timeout(120)


def piped(*args: str, tmp_path) -> subprocess.CompletedProcess:
    """`dspy-top ARGS` with stdout a pipe (as in `dspy-top | cat` or `dspy-top > file`)."""
    env_dir = runtime_dir()
    try:
        return subprocess.run(
            [sys.executable, "-m", "dspy_top", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=30,
            env={
                "PATH": "/usr/bin:/bin",
                "DSPY_TOP_RUNTIME_DIR": str(env_dir),
                "HOME": str(tmp_path),
                "TMPDIR": str(tmp_path),
                "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            },
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(
            f"dspy-top {' '.join(args)} kept running without a terminal; it wrote {(exc.stdout or b'')[:200]!r}"
        ) from None


def test_the_viewer_without_a_terminal_exits_2_and_suggests_batch_mode(tmp_path):
    result = piped(tmp_path=tmp_path)
    assert result.returncode == 2
    assert "needs a terminal" in result.stderr and "-b" in result.stderr
    assert "\x1b" not in result.stdout


@pytest.mark.slow
def test_run_and_demo_without_a_terminal_exit_2_before_starting_anything(tmp_path):
    marker = tmp_path / "the-job-ran"
    result = piped("run", "--", sys.executable, "-c", f"open({str(marker)!r}, 'w')", tmp_path=tmp_path)
    assert result.returncode == 2 and "needs a terminal" in result.stderr
    assert not marker.exists()
    assert not list(tmp_path.glob("dspy-top-run-*"))
    result = piped("demo", tmp_path=tmp_path)
    assert result.returncode == 2 and "needs a terminal" in result.stderr
    # Batch mode needs no terminal.
    assert piped("-b", "-n", "1", "--json", tmp_path=tmp_path).returncode == 1  # nothing to attach to
