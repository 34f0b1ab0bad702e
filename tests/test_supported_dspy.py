"""What installing dspy-top asks of a project's DSPy: every release line it supports is admitted
as it is, and litellm is left to DSPy (docs/dspy-versions.md). The matrix in `.ci/run` installs
each line first and checks that installing dspy-top changes neither."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]
TESTED = ("2.6.27", "3.0.4", "3.1.3", "3.2.1", "3.3.1", "3.4.1")


def requirements() -> dict[str, Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {Requirement(line).name: Requirement(line) for line in project["dependencies"]}


def test_every_tested_dspy_release_is_admitted_as_it_is():
    dspy = requirements()["dspy"].specifier
    assert [version for version in TESTED if version not in dspy] == []
    assert "2.5.43" not in dspy  # older than any line dspy-top is tested on


def test_litellm_is_left_to_dspy():
    assert "litellm" not in requirements()


def test_the_ci_matrix_and_the_docs_name_the_supported_lines():
    lines = re.search(r'^DSPY_LINES="([^"]+)"', (REPO / ".ci/run").read_text(), re.M).group(1).split()
    dspy = requirements()["dspy"].specifier
    assert lines and all(f"{line}.0" in dspy for line in lines)
    # The lines issue 15 names, each in a virtual environment of its own (the newest runs the whole suite).
    assert {"2.6", "3.0", "3.2", "3.3"} <= set(lines)
    docs = (REPO / "docs/dspy-versions.md").read_text() + (REPO / "README.md").read_text()
    assert all(version in docs for version in TESTED)
    # The README itself states the supported range, not only the page it links to.
    readme = " ".join((REPO / "README.md").read_text().split())
    assert "supports DSPy 2.6 and every 3.x release line through 3.4" in readme
    assert all(version in readme for version in TESTED)
    stated = re.search(r"its requirement, `(dspy[^`]+)`", readme)
    assert stated and Requirement(stated.group(1)).specifier == requirements()["dspy"].specifier
