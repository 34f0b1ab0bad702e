"""The viewer's side never imports dspy or litellm (and batch mode not even Textual): checked in a fresh interpreter.

A witness on `sys.meta_path` notes, for each heavy package, which module of ours imported it
first, so a leak names its culprit instead of only saying that it happened.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers.jobs import REPO

WITNESS = """
import json, sys

HEAVY = ("dspy", "litellm", "openai", "textual")
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

CHECK = WITNESS + """
import dspy_top.cli, dspy_top.client, dspy_top.model, dspy_top.viewer.batch, dspy_top.sources.collector
import dspy_top.sources.local, dspy_top.run
batch = settle()
import dspy_top.viewer.app
viewer = {top: who for top, who in settle().items() if top != "textual"}
print(json.dumps({"batch": batch, "viewer": viewer}))
"""


def run(code: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_viewer_imports_leave_dspy_and_litellm_out():
    leaks = run(CHECK)
    assert leaks["batch"] == {}, f"batch mode imported these (package: first importer of ours): {leaks['batch']}"
    assert leaks["viewer"] == {}, f"the viewer imported these (package: first importer of ours): {leaks['viewer']}"


def test_cli_help_starts_fast_without_textual():
    code = WITNESS + "from dspy_top import cli; cli.build_parser(); print(json.dumps(settle()))"
    leaks = run(code)
    assert leaks == {}, f"`dspy-top --help` imported these (package: first importer of ours): {leaks}"


def test_the_witness_names_the_module_that_imported_a_heavy_package():
    # The viewer does import Textual: the witness must name it, with the line.
    importers = run(WITNESS + "import dspy_top.viewer.app; print(json.dumps(settle()))")
    assert set(importers) == {"textual"}
    assert importers["textual"].startswith("dspy_top.viewer.") and "(line " in importers["textual"]
