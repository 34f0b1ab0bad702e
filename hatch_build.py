"""Builds dspy-top's two compiled parts when installed, both for a recording job's server thread:

- `dspy_top/instrumentation/_payload_pack.c` packs a recording's payloads in C
  (dspy_top/instrumentation/payload_pack.py says why);
- `dspy_top/recording/_deflate.c` compresses a recording on a thread of its own, off the GIL
  (dspy_top/recording/segments.py says why); it needs zlib's header (Debian: zlib1g-dev).

Both are optional: without a C compiler (`$CC`, else the one Python was built with), Python's
headers or zlib's, the install goes on, says so, and the recording is made in Python (the same
file, at a higher cost to the job); `DSPY_TOP_NO_C=1` skips both. An editable install builds
them into the source tree, beside their sources; a wheel carries them and is tagged for this
platform. Standard library only: it runs in pip's isolated build environment.
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
DEFLATE_SOURCE = Path("dspy_top") / "recording" / "_deflate.c"
DEFLATE_MODULE = "dspy_top/recording/_deflate"
# Each part: its source, its module, what it links, and what it is (for the message when it cannot be built).
PARTS = (
    (SOURCE, MODULE, (), "the compiled payload packer", "spends more of its CPU on each payload"),
    (DEFLATE_SOURCE, DEFLATE_MODULE, ("-lz", "-lpthread"), "the compiled deflate", "waits more for its compressing"),
)


def compile_extension(root: Path, out_dir: Path, part: int = 0) -> Path | None:
    """Compile one part (PARTS[part]) into `out_dir`; its path, or None (said on stderr) if it cannot be."""
    source, module, libraries, name, cost = PARTS[part]
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = out_dir / (Path(module).name + suffix)
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").is_file():
        _say(name, cost, f"Python's headers are not in {include} (a Debian system: apt-get install python3-dev)")
        return None
    compiler = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    command = [
        *compiler,
        *shlex.split(sysconfig.get_config_var("CCSHARED") or "-fPIC"),
        "-O2",
        "-shared",
        f"-I{include}",
        str(root / source),
        "-o",
        str(target),
        *libraries,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        _say(name, cost, f"cannot run the C compiler ({exc})")
        return None
    if result.returncode != 0:
        hint = " (zlib's header: apt-get install zlib1g-dev)" if "zlib.h" in result.stderr else ""
        _say(name, cost, f"the C compiler failed{hint}:\n{result.stderr.strip()[-2000:]}")
        return None
    return target


def _say(name: str, cost: str, why: str) -> None:
    print(
        f"dspy-top: not building {name}: {why}.\ndspy-top works without it; a recording job then {cost}.",
        file=sys.stderr,
    )


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict) -> None:
        if self.target_name != "wheel" or os.environ.get("DSPY_TOP_NO_C") == "1":
            return
        root = Path(self.root)
        for part, (source, module, *_) in enumerate(PARTS):
            if version == "editable":  # imported from the source tree: built beside its source
                compile_extension(root, (root / source).parent, part)
                continue
            built = compile_extension(root, Path(tempfile.mkdtemp(prefix="dspy-top-build-")), part)
            if built is not None:
                build_data["force_include"][str(built)] = f"{module}{built.name[len(Path(module).name) :]}"
                build_data["pure_python"] = False
                build_data["infer_tag"] = True
