"""The lint and format rules hold (pyproject.toml's [tool.ruff]): `ruff check` and `ruff format --check` over the
package, the tests, the benchmarks and the scripts find nothing; a failure shows ruff's own report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.jobs import REPO

PARTS = ("dspy_top", "tests", "benchmarks", "scripts", "hatch_build.py")


def ruff(*args: str) -> subprocess.CompletedProcess:
    command = Path(sys.executable).with_name("ruff")
    assert command.exists(), "ruff is missing: pip install -e '.[test]'"
    return subprocess.run([str(command), *args], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_ruff_finds_nothing():
    result = ruff("check", "--no-cache", *PARTS)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]


def test_the_code_is_formatted():
    result = ruff("format", "--check", "--no-cache", *PARTS)
    assert result.returncode == 0, (
        "run `ruff format " + " ".join(PARTS) + "`:\n" + result.stdout[-8000:] + result.stderr[-2000:]
    )


def test_no_test_module_imports_another():
    """What tests share lives in tests/helpers/ (or a fixture): a test module imported by another
    runs its tests twice under two names and ties the two files together."""
    import ast

    offenders = []
    for path in sorted((REPO / "tests").glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            if any(name.startswith("tests.test_") for name in names):
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == [], offenders
