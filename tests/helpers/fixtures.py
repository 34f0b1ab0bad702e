"""Fixtures every test module sees (tests/conftest.py loads this module as a plugin), so none imports them.

The heavy imports happen inside the fixtures: a test that asks for none of them loads neither dspy nor litellm here.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def sim():
    """The simulated LM, answering at once, for one test module."""
    from dspy_top.simlm import SimLM

    with SimLM(latency_scale=0.0) as server:
        yield server


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    """This process instrumented, and a viewer reading its socket (tests.helpers.reader.Reader)."""
    import dspy_top
    from dspy_top import client
    from tests.helpers.reader import Reader

    os.environ.setdefault("DSPY_TOP_RUNTIME_DIR", str(tmp_path_factory.mktemp("rt")))
    handle = dspy_top.instrument()
    with client.Connection(handle.socket_path) as connection:
        yield Reader(connection)


@pytest.fixture
def run(sim, viewer):
    """Resets the server's count and marks the stream; the test runs its program in between."""
    import dspy

    sim.reset()
    sim.configure(error_every=None, latency_scale=0.0)
    viewer.mark()
    yield viewer
    dspy.configure(lm=None, callbacks=[], track_usage=False, disable_history=False)
    # DSPy 2.6 keeps its settings overrides per thread, and concurrent asyncio tasks restore
    # each other's: after a gather of acall()s the main thread may be left overriding `lm`
    # with the old one (with or without dspy-top). Start the next test clean.
    local = getattr(sys.modules["dspy.dsp.utils.settings"], "thread_local_overrides", None)
    if hasattr(local, "overrides") and not hasattr(local, "reset"):
        local.overrides = type(local.overrides)()


@pytest.fixture
def small_checkpoints(monkeypatch):
    """Checkpoints and segments every few hundred calls, so a small recording has many of each."""
    from dspy_top.recording import checkpoints, segments

    monkeypatch.setattr(checkpoints, "CHECKPOINT_CALLS", 300)
    monkeypatch.setattr(segments, "SEGMENT_BYTES", 16 * 1024)


@pytest.fixture
def utc(monkeypatch):
    """Times on screen in UTC (snapshots are compared with pictures taken so)."""
    import time

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


@pytest.fixture
def runtime(monkeypatch, tmp_path):
    """A short private socket directory (AF_UNIX paths are limited to 107 bytes) for a test that starts jobs
    with `dspy-top run` or `demo`; the jobs' private log directories under its tmp_path. (A module that needs
    another kind of runtime directory defines its own `runtime`.)"""
    import shutil
    import tempfile
    from pathlib import Path

    directory = Path(tempfile.mkdtemp(prefix="dtr", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("DSPY_TOP_RUNTIME_DIR", str(directory))
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    monkeypatch.delenv("DSPY_TOP", raising=False)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def shared_tmp():
    """A sticky, world-writable directory like /tmp, of this test's own."""
    base = Path(tempfile.mkdtemp(prefix="dtt", dir="/tmp"))
    os.chmod(base, 0o1777)
    yield base
    shutil.rmtree(base, ignore_errors=True)
