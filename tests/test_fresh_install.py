"""As a new user: a copy of the repository, the README's Quick start command in a real terminal.

It creates a fresh virtual environment, installs the project from PyPI packages (pip's
cache makes later runs faster) and runs `dspy-top demo`: the live view must appear and its
call count and cost must grow. Then the installed wheel's own `dspy-top run` is checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.jobs.terminal import SKIP_REASON, Terminal, header_numbers

REPO = Path(__file__).resolve().parents[1]
DEMO_ARGS = "--speed 0.1 --questions 8 --train 8 --dev 8 -d 0.5"


def quick_start_demo_command() -> str:
    """The README's Quick start line that installs and runs the demo."""
    for line in (REPO / "README.md").read_text().splitlines():
        if line.startswith("python3 -m venv") and line.rstrip().endswith("dspy-top demo"):
            return line.strip()
    raise AssertionError("README.md has no Quick start line ending in `dspy-top demo`")


def copy_of_the_repository(destination: Path) -> Path:
    """What a clone holds: the working tree without virtual environments, caches or git data."""
    ignore = shutil.ignore_patterns(
        ".git",
        ".venv",
        "venv",
        "__pycache__",
        "*.pyc",
        "*.egg-info",
        "build",
        "dist",
        ".pytest_cache",
        "snapshot_report.html",
    )
    shutil.copytree(REPO, destination, symlinks=True, ignore=ignore)
    return destination


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
def test_quick_start_installs_into_a_fresh_venv_and_the_demo_view_goes_live(tmp_path):
    clone = copy_of_the_repository(tmp_path / "dspy-top")
    runtime = Path(tempfile.mkdtemp(prefix="dtf", dir="/tmp"))
    # The README says python3; the test's own interpreter is a Python 3.11+ for certain.
    command = quick_start_demo_command().replace("python3 -m venv", f"{sys.executable} -m venv", 1)
    env = {
        "DSPY_TOP_RUNTIME_DIR": str(runtime),
        "TMPDIR": str(tmp_path),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PIP_PROGRESS_BAR": "off",
    }
    term = Terminal(["sh", "-c", f"{command} {DEMO_ARGS}"], tmp_path / "status", cwd=clone, env=env)
    try:
        first = header_numbers(
            term.wait_for(
                lambda s: (header_numbers(s) or (0, 0))[0] > 0 or term.status_file.exists(),
                "the live view",
                timeout=1500,
            )
        )
        assert first is not None, f"the Quick start command ended early; the screen was:\n{term.screen()}"
        later = header_numbers(
            term.wait_for(
                lambda s: (n := header_numbers(s)) is not None and n[0] > first[0] and n[1] > first[1],
                "the call count and the cost growing",
                timeout=120,
            )
        )
        assert later[0] > first[0] and later[1] > first[1]
        term.wait_for(lambda s: "exited with code 0" in s, "the demo finishing", timeout=300)
        term.keys("q")
        assert term.exit_status() == 0
    finally:
        term.close()

    venv = clone / ".venv"
    installed = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import dspy_top, sys; print(dspy_top.__file__)"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert installed.returncode == 0 and "site-packages" in installed.stdout, installed.stderr  # not the copy
    # The wheel ships the sitecustomize shim `dspy-top run` copies for the job (a file, not a string).
    assert (Path(installed.stdout.strip()).parent / "run" / "site" / "sitecustomize.py").is_file()
    # The wheel's own `run`: the .pth file it installed instruments the job.
    result = subprocess.run(
        [
            str(venv / "bin" / "dspy-top"),
            "run",
            "-b",
            "--json",
            "--",
            str(venv / "bin" / "python"),
            "demos/rag_react.py",
            "--speed",
            "0",
            "--questions",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=clone,
        env={
            **os.environ,
            "DSPY_TOP_RUNTIME_DIR": str(runtime),
            "TMPDIR": str(tmp_path),
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}",
        },
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["totals"]["calls"] >= 8
    shutil.rmtree(runtime, ignore_errors=True)
