"""The viewer's side never imports dspy or litellm (and batch mode not even Textual), the viewer never imports
`dspy-top serve`'s exporters, and serve imports none of dspy, litellm or Textual: checked in a fresh interpreter.

A witness on `sys.meta_path` notes, for each heavy package, which module of ours imported it
first, so a leak names its culprit instead of only saying that it happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.import_witness import WITNESS, run
from tests.helpers.jobs import REPO

CHECK = (
    WITNESS
    + """
import dspy_top.cli, dspy_top.client, dspy_top.model, dspy_top.viewer.batch, dspy_top.sources.collector
import dspy_top.sources.local, dspy_top.run
batch = settle()
import dspy_top.viewer.app, dspy_top.viewer.replay.app, dspy_top.viewer.replay.runs_list
viewer = {top: who for top, who in settle().items() if top != "textual"}
print(json.dumps({"batch": batch, "viewer": viewer}))
"""
)


def test_viewer_imports_leave_dspy_and_litellm_out():
    leaks = run(CHECK)
    assert leaks["batch"] == {}, f"batch mode imported these (package: first importer of ours): {leaks['batch']}"
    assert leaks["viewer"] == {}, f"the viewer imported these (package: first importer of ours): {leaks['viewer']}"


def test_cli_help_starts_fast_without_textual():
    code = WITNESS + "from dspy_top import cli; cli.build_parser(); print(json.dumps(settle()))"
    leaks = run(code)
    assert leaks == {}, f"`dspy-top --help` imported these (package: first importer of ours): {leaks}"


def test_the_relay_and_the_ssh_source_leave_dspy_litellm_and_textual_out():
    code = WITNESS + (
        "import dspy_top.relay.command, dspy_top.relay.loop, dspy_top.sources.ssh, dspy_top.hosts; "
        "print(json.dumps(settle()))"
    )
    leaks = run(code)
    assert leaks == {}, f"`dspy-top relay` or `--host` imported these (package: first importer of ours): {leaks}"


def test_the_witness_names_the_module_that_imported_a_heavy_package():
    # The viewer does import Textual: the witness must name it, with the line.
    importers = run(WITNESS + "import dspy_top.viewer.app; print(json.dumps(settle()))")
    assert set(importers) == {"textual"}
    assert importers["textual"].startswith("dspy_top.viewer.") and "(line " in importers["textual"]


FIRST_FRAME = """
import json, sys
from dspy_top import options
import dspy_top.viewer.app as app

options.no_terminal = lambda: None  # no terminal here: the app runs headless
LATER = ("dspy_top.sources", "dspy_top.model.process", "dspy_top.schema", "dspy_top.protocol", "msgpack",
         "dspy_top.attach")
loaded = {}


def first_frame_drawn(self):  # what collecting would start with, once the first frame is on screen
    loaded["before"] = sorted(m for m in sys.modules if m.startswith(LATER))
    self.exit()


app.TopApp._start_collecting = first_frame_drawn
run = app.TopApp.run
app.TopApp.run = lambda self, **kw: run(self, headless=True, size=(120, 40))
from dspy_top import cli

cli.main([])
print(json.dumps(loaded))
"""


@pytest.mark.slow
def test_the_first_frame_comes_before_the_sources_and_the_model_are_loaded(tmp_path):
    """`dspy-top` draws its first frame, then loads what collecting needs (issue 18: the first frame
    sooner): no source, wire protocol, msgpack, process model or attach package (the offers `A` takes) before it."""
    result = subprocess.run(
        [sys.executable, "-c", FIRST_FRAME],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        env={**os.environ, "DSPY_TOP_RUNTIME_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"before": []}


SERVE = (
    WITNESS
    + """
import dspy_top.serve.command
help_only = settle()
import dspy_top.serve.agent, dspy_top.serve.prometheus, dspy_top.serve.otlp_export, dspy_top.serve.otlp_metrics
import dspy_top.serve.otlp_spans
print(json.dumps({"help": help_only, "exporters": settle()}))
"""
)


def test_serve_imports_neither_dspy_litellm_nor_textual_and_its_help_no_exporter():
    leaks = run(SERVE)
    assert leaks["help"] == {}, f"`dspy-top serve --help` imported these: {leaks['help']}"
    heavy = {top: who for top, who in leaks["exporters"].items() if top != "opentelemetry"}
    assert heavy == {}, f"dspy-top serve imported these (package: first importer of ours): {heavy}"
    assert set(leaks["exporters"]) == {"opentelemetry"}  # the witness saw the OTLP exporter come
