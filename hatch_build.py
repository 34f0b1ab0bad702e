"""Builds dspy-top's one compiled part, `dspy_top/instrumentation/_payload_pack.c`, when installed.

It packs a recording's payloads in C (dspy_top/instrumentation/payload_pack.py says why). It is
optional: without a C compiler (`$CC`, else the one Python was built with) and Python's headers
the install goes on, says so, and every payload takes the Python pass (the same recording, at a
higher cost to the job); `DSPY_TOP_NO_C=1` skips it. An editable
install builds it into the source tree, beside its source; a wheel carries it and is tagged
for this platform. Standard library only: it runs in pip's isolated build environment.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

try:
    from hatchling.builders.hooks.plugin.interface import BuildHookInterface
except ImportError:  # imported outside a build (tests/test_payload_pack.py builds with `compile_extension`)
    BuildHookInterface = object

SOURCE = Path("dspy_top") / "instrumentation" / "_payload_pack.c"
MODULE = "dspy_top/instrumentation/_payload_pack"


def compile_extension(root: Path, out_dir: Path) -> Path | None:
    """Compile the extension into `out_dir`; its path, or None (said on stderr) if it cannot be."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = out_dir / (Path(MODULE).name + suffix)
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        _say(f"Python's headers are not in {include} (a Debian system: apt-get install python3-dev)")
        return None
    compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    command = [
        *compiler,
        *shlex.split(sysconfig.get_config_var("CCSHARED") or "-fPIC"),
        "-O2",
        "-shared",
        f"-I{include}",
        str(root / SOURCE),
        "-o",
        str(target),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        _say(f"cannot run the C compiler ({exc})")
        return None
    if result.returncode != 0:
        _say(f"the C compiler failed:\n{result.stderr.strip()[-2000:]}")
        return None
    return target


def _say(why: str) -> None:
    print(
        f"dspy-top: not building the compiled payload packer: {why}.\n"
        "dspy-top works without it; a recording job then spends more of its CPU on each payload.",
        file=sys.stderr,
    )


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or os.environ.get("DSPY_TOP_NO_C") == "1":
            return
        root = Path(self.root)
        if version == "editable":  # imported from the source tree: built beside its source
            compile_extension(root, (root / SOURCE).parent)
            return
        built = compile_extension(root, Path(tempfile.mkdtemp(prefix="dspy-top-build-")))
        if built is not None:
            build_data["force_include"][str(built)] = f"{MODULE}{built.name[len(Path(MODULE).name) :]}"
            build_data["pure_python"] = False
            build_data["infer_tag"] = True
