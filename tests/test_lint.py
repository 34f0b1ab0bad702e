"""The lint rules hold (pyproject.toml's [tool.ruff]): `ruff check` over the package, the tests, the benchmarks and
the scripts finds nothing; a failure shows ruff's own report."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers.jobs import REPO


def test_ruff_finds_nothing():
    ruff = Path(sys.executable).with_name("ruff")
    assert ruff.exists(), "ruff is missing: pip install -e '.[test]'"
    result = subprocess.run([str(ruff), "check", "--no-cache", "dspy_top", "tests", "benchmarks", "scripts"],
                            capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
