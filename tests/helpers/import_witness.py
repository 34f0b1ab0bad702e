"""Imports watched in a fresh interpreter: a witness on `sys.meta_path` notes, for each heavy package, which module
of ours imported it first, so a leak names its culprit instead of only saying that it happened."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers.job_process import REPO

WITNESS = """
import json, sys

HEAVY = ("dspy", "litellm", "openai", "textual", "prometheus_client", "opentelemetry")
importers = {}


class Witness:
    \"\"\"Names the first module of ours on the stack when a heavy package is first imported.\"\"\"

    def find_spec(self, name, path=None, target=None):
        top = name.partition(".")[0]
        if top in HEAVY and top not in importers:
            frame = sys._getframe(1)
            while frame is not None and not frame.f_globals.get("__name__", "").startswith("dspy_top"):
                frame = frame.f_back
            importers[top] = "?" if frame is None else f"{frame.f_globals['__name__']} (line {frame.f_lineno})"
        return None  # the usual finders do the importing


def settle():
    \"\"\"Heavy packages in sys.modules that the witness never saw were there before it (start-up).\"\"\"
    for name in list(sys.modules):
        top = name.partition(".")[0]
        if top in HEAVY and top not in importers:
            importers[top] = "already imported at interpreter start-up"
    return dict(importers)


sys.meta_path.insert(0, Witness())
"""


def run(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
