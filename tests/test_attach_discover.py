"""Finding attachable processes for the viewer, from /proc alone, and `dspy-top attach --watch` in a terminal."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dspy_top.attach import discover, session
from dspy_top.simlm import SimLM
from tests.helpers.jobs import REPO, runtime_dir
from tests.helpers.plain_jobs import PlainJob
from tests.jobs.terminal import SKIP_REASON, Terminal

needs_gdb = pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed (.ci/run installs it)")


@pytest.fixture
def directory():
    path = runtime_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_a_script_imports_dspy_only_when_it_says_so(tmp_path):
    cases = {
        "import dspy\n": True,
        "import os, sys\nfrom dspy.teleprompt import MIPROv2\n": True,
        "  import dspy as d\n": True,
        "import dspy_top\n": False,
        "from dspy_top import instrument\n": False,
        "# import dspy\nx = 1\n": False,
        "print('import dspy')\n": False,
    }
    for index, (text, expected) in enumerate(cases.items()):
        script = tmp_path / f"s{index}.py"
        script.write_text(text)
        assert discover._imports_dspy(script) is expected, text
    assert discover._NAMES_DSPY.search("python -m dspy.cli run")
    assert not discover._NAMES_DSPY.search("python -m dspy_top") and not discover._NAMES_DSPY.search("dspy-top -b")


@pytest.mark.slow
@needs_gdb
def test_a_dspy_job_started_without_dspy_top_is_listed_until_attached(directory):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], cwd="/tmp")
    with SimLM(latency_scale=0.0) as sim:
        job = PlainJob("idle", 0, sim.base_url, directory)
        try:
            found = {c.pid: c for c in discover.attachable_processes(directory)}
            assert found[job.pid].evidence == "imports dspy (plain_job.py)"
            assert str(Path(job.pid and "plain_job.py")) in found[job.pid].command
            assert other.pid not in found  # a Python process that shows no sign of DSPy
            assert session.attach(job.pid, runtime_dir=directory).status == "attached"
            assert job.pid not in {c.pid for c in discover.attachable_processes(directory)}
        finally:
            job.close()
            other.kill()
            other.wait(10)


@pytest.mark.slow
@needs_gdb
@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
def test_attach_watch_opens_the_live_view_with_the_calls_before_the_attach(directory):
    with SimLM(latency_scale=0.05) as sim:
        job = PlainJob("busy", 0, sim.base_url, directory)
        tmux = None
        try:
            deadline = time.monotonic() + 60
            while sim.stats()["requests"] < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            tmux = Terminal(
                [sys.executable, "-m", "dspy_top", "attach", "--watch", "-d", "0.3", str(job.pid)],
                directory / "status",
                cwd=REPO,
                env={"DSPY_TOP_RUNTIME_DIR": str(directory)},
                width=160,
                height=40,
            )
            screen = tmux.wait_for(
                lambda s: "before attach, from DSPy's history" in s and " before attach · plain_job.py busy" in s,
                "the header and the process row",
                timeout=60,
            )
            assert "(before attach)" in screen  # the module row holding those calls
            tmux.keys("q")
            assert tmux.exit_status(timeout=15) == 0
        finally:
            if tmux is not None:
                tmux.close()
            job.close()
