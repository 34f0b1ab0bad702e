"""The viewer's side never imports dspy or litellm (and batch mode not even Textual): checked in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers.jobs import REPO

CHECK = """
import sys
import dspy_top.cli, dspy_top.client, dspy_top.model, dspy_top.viewer.batch, dspy_top.viewer.collector
batch_textual = "textual" in sys.modules
import dspy_top.viewer.app
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("dspy", "litellm", "openai"))
print(batch_textual, heavy)
"""


def test_viewer_imports_leave_dspy_and_litellm_out():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False []"


def test_cli_help_starts_fast_without_textual():
    code = "import sys; from dspy_top import cli; cli.build_parser(); print('textual' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.stdout.strip() == "False"
