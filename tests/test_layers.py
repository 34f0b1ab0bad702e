"""The layer contracts: which part may import which (pyproject.toml's [tool.importlinter], run with import-linter).

The model imports neither Textual, dspy, litellm, the viewer, the sources nor the
instrumentation; the sources (the collector and what it reads) import the model and the
protocol, never Textual, dspy, litellm, the instrumentation or a front end (the viewer,
`dspy-top run`, the command line); the viewer may import the sources, never the
instrumentation, dspy or litellm; the job side never imports Textual. The protocol imports only
msgpack and the standard library: a list of what it may import, which import-linter's
forbidden contracts cannot say, so it is checked here from the source. Lazy imports inside
functions count too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.helpers.jobs import REPO

REQUIRED = {  # source module -> what it must never import, directly or through others
    "dspy_top.model": {"textual", "dspy", "litellm", "dspy_top.viewer", "dspy_top.instrumentation", "dspy_top.sources"},
    "dspy_top.sources": {
        "textual",
        "dspy",
        "litellm",
        "dspy_top.instrumentation",
        "dspy_top.viewer",
        "dspy_top.run",
        "dspy_top.cli",
    },
    "dspy_top.viewer": {"dspy_top.instrumentation", "dspy", "litellm"},
    "dspy_top.relay": {"textual", "dspy", "litellm", "dspy_top.instrumentation", "dspy_top.viewer", "dspy_top.cli"},
    "dspy_top.instrumentation": {"textual"},
    "dspy_top.protocol": {"textual"},
    "dspy_top.autoload": {"textual"},
    "dspy_top.recording": {"textual", "dspy", "litellm", "dspy_top.instrumentation"},
}


def test_every_layer_contract_is_declared_and_kept():
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    for source, forbidden in REQUIRED.items():
        covered = set().union(
            *(
                set(c["forbidden_modules"])
                for c in contracts
                if c["type"] == "forbidden" and source in c["source_modules"]
            )
        )
        assert forbidden <= covered, f"{source}: no contract forbids {sorted(forbidden - covered)}"
        assert not any(c.get("allow_indirect_imports") for c in contracts if source in c["source_modules"])
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.exists(), "import-linter is missing: pip install -e '.[test]'"
    result = subprocess.run([str(lint), "--no-cache"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert f"Contracts: {len(contracts)} kept, 0 broken." in result.stdout


def imported_modules(path: Path) -> set[str]:
    """Every name a source file imports (`from a import b` gives `a.b`), at module level or in functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def outside(names: set[str], allowed: set[str]) -> set[str]:
    """The names that are neither in an allowed top-level package nor under an allowed module."""
    return {
        name
        for name in names
        if name.partition(".")[0] not in allowed and not any(name == a or name.startswith(a + ".") for a in allowed)
    }


def test_the_protocol_imports_only_msgpack_and_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"__future__", "msgpack"}
    imported = imported_modules(REPO / "dspy_top" / "protocol.py")
    assert "msgpack" in imported and "struct" in imported  # what it is known to use: the parse is sound
    assert outside(imported, allowed) == set()
    files = sorted((REPO / "dspy_top" / "schema").glob("*.py"))
    assert len(files) > 1
    schema = set().union(*(imported_modules(path) for path in files))
    assert outside(schema, allowed | {"dspy_top.latency", "dspy_top.protocol", "dspy_top.schema"}) == set()
