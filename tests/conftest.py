"""Settings for the whole test run: every job a test starts records (`dspy-top run`, `dspy-top demo`
and DSPY_TOP_RECORD do by default) into a state directory of the run's own, never the user's.

XDG_STATE_HOME rather than DSPY_TOP_STATE_DIR: tests that build their own environment for a
user's state directory set XDG_STATE_HOME, and DSPY_TOP_STATE_DIR would override theirs.

The fixtures any test may ask for (the simulated LM, a live viewer, runtime directories, UTC) are in
tests/helpers/fixtures.py, loaded here as a plugin."""

import os
import shutil
import tempfile

# Fixtures any test module may ask for without importing them.
pytest_plugins = ["tests.helpers.fixtures"]

_STATE = tempfile.mkdtemp(prefix="dspy-top-tests-state-")


def pytest_configure(config):
    os.environ["XDG_STATE_HOME"] = _STATE
    os.environ.pop("DSPY_TOP_STATE_DIR", None)


def pytest_unconfigure(config):
    shutil.rmtree(_STATE, ignore_errors=True)
