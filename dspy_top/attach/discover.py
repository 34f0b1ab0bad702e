"""This user's running Python processes that use DSPy but are not instrumented: what `attach` could take.

For the viewer's process list. Found from /proc alone (no ptrace, no signal, nothing the
process could notice), so the evidence is circumstantial and each candidate says which:
its main script imports dspy, it has files of DSPy's disk cache open, or its command line
names dspy. A process with none of these (a notebook kernel, `python -m pkg`) is not
listed even if it uses DSPy; `dspy-top attach PID` still works on it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from dspy_top import client, paths
from dspy_top.attach.target import PROC, read_command

_IMPORTS_DSPY = re.compile(rb"^\s*(?:import\s+dspy\b(?!_)|from\s+dspy(?:\.[\w.]+)?\s+import\b)", re.MULTILINE)
_PYTHON = re.compile(r"(?:^|/)(?:python\d*(?:\.\d+)?[a-z]*|libpython\d+\.\d+[a-z]*\.so[.\d]*)$")
_NAMES_DSPY = re.compile(r"(?<![\w-])dspy(?![\w-])", re.IGNORECASE)  # dspy, not dspy_top or dspy-top
_CACHE = "dspy_cache"  # DSPy's disk cache (~/.dspy_cache, or DSPY_CACHEDIR, often named after it)
SCRIPT_BYTES = 256 * 1024  # how much of a script is read for its imports


@dataclass(frozen=True)
class Candidate:
    """A process `dspy-top attach` could instrument, and why it looks like a DSPy job."""

    pid: int
    command: str
    evidence: str  # "imports dspy (job.py)", "DSPy's cache open", "command line names dspy"


def attachable_processes(runtime_dir: Path | None = None) -> list[Candidate]:
    """This user's Python processes that look like DSPy jobs and serve no dspy-top socket, by pid."""
    served = {endpoint.pid for endpoint in client.discover(runtime_dir or paths.runtime_dir(), cleanup=False)}
    me = os.getpid()
    found = []
    for entry in _pids():
        if entry == me or entry in served:
            continue
        candidate = _candidate(entry)
        if candidate is not None:
            found.append(candidate)
    return found


def _pids() -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir(PROC) if name.isdigit())
    except OSError:
        return []


def _candidate(pid: int) -> Candidate | None:
    base = PROC / str(pid)
    try:
        if base.stat().st_uid != os.getuid():
            return None
        exe = os.readlink(base / "exe")
    except OSError:
        return None  # gone, another user's, or not readable
    if not _is_python(base, exe):
        return None
    command = read_command(pid)
    evidence = _evidence(base, command)
    return Candidate(pid, command, evidence) if evidence else None


def _is_python(base: Path, exe: str) -> bool:
    if _PYTHON.search(exe):
        return True
    try:
        with open(base / "maps") as maps:
            return any("libpython" in line for line in maps)
    except OSError:
        return False


def _evidence(base: Path, command: str) -> str | None:
    words = command.split()
    if any("dspy_top" in w or "dspy-top" in w for w in words[:3]):
        return None  # dspy-top itself (a viewer, `dspy-top run`)
    script = _script(base, words)
    if script is not None and _imports_dspy(script):
        return f"imports dspy ({script.name})"
    if _cache_open(base):
        return "DSPy's cache open"
    if _NAMES_DSPY.search(command):
        return "command line names dspy"
    return None


def _script(base: Path, words: list[str]) -> Path | None:
    """The script a `python [options] script.py` command runs, resolved against the process's cwd."""
    for word in words[1:]:
        if word in ("-c", "-m"):
            return None
        if word.startswith("-"):
            continue
        path = Path(word)
        if not path.is_absolute():
            try:
                path = Path(os.readlink(base / "cwd")) / path
            except OSError:
                return None
        return path
    return None


def _imports_dspy(script: Path) -> bool:
    try:
        with open(script, "rb") as handle:
            return bool(_IMPORTS_DSPY.search(handle.read(SCRIPT_BYTES)))
    except OSError:
        return False


def _cache_open(base: Path) -> bool:
    """Has it a file of DSPy's disk cache open (DSPy opens it at its first cached call)?"""
    try:
        fds = os.listdir(base / "fd")
    except OSError:
        return False
    where = _environment(base).get("DSPY_CACHEDIR")
    for fd in fds:
        try:
            target = os.readlink(base / "fd" / fd)
        except OSError:
            continue
        if _CACHE in target or (where and target.startswith(where.rstrip("/") + "/")):
            return True
    return False


def _environment(base: Path) -> dict[str, str]:
    try:
        raw = (base / "environ").read_bytes()
    except OSError:
        return {}
    pairs = (item.decode(errors="replace").partition("=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}
