"""What /proc says about a process before anyone touches it: owner, Python, and why ptrace may fail.

Reads only /proc (no ptrace, no signal), so it is safe on any process; Linux only.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from dspy_top.attach.refusals import NO_PROCESS, NOT_PYTHON, NOT_YOURS, PTRACE_DENIED, UNSUPPORTED_PYTHON, AttachRefused

PROC = Path("/proc")
CAP_SYS_PTRACE = 19
_LIBPYTHON = re.compile(r"libpython(\d+)\.(\d+)[a-z]*\.so")
_PYTHON_EXE = re.compile(r"python(\d+)\.(\d+)[a-z]*$")


@dataclass(frozen=True)
class Target:
    """A live process as /proc shows it."""

    pid: int
    exe: str
    command: str
    python: tuple[int, int] | None  # (major, minor) when /proc tells it; None: gdb reads it from the process


def inspect_target(pid: int) -> Target:
    """The process, or AttachRefused when it is not there, not ours, unreadable or not Python."""
    base = PROC / str(pid)
    try:
        status = (base / "status").read_text()
    except FileNotFoundError:
        raise AttachRefused(f"no process {pid}", NO_PROCESS) from None
    except OSError as exc:
        raise AttachRefused(f"cannot read /proc/{pid}/status: {exc.strerror}", NO_PROCESS) from None
    uids = _field(status, "Uid")
    if uids and any(int(u) != os.getuid() for u in uids[:3]):
        raise AttachRefused(
            f"pid {pid} belongs to another user (uid {uids[0]}); dspy-top attaches only to your own processes",
            NOT_YOURS,
        )
    command = read_command(pid)
    try:
        maps = (base / "maps").read_text()
        exe = os.readlink(base / "exe")
    except FileNotFoundError:
        raise AttachRefused(f"pid {pid} exited", NO_PROCESS) from None
    except PermissionError:
        raise AttachRefused(f"cannot trace pid {pid}: {ptrace_hint(pid)}", PTRACE_DENIED) from None
    python = _python_version(maps, exe)
    if python is None and not _has_python_symbols(exe):
        raise AttachRefused(f"pid {pid} is not a Python process ({os.path.basename(exe)})", NOT_PYTHON)
    if python is not None and python < (3, 11):
        raise AttachRefused(
            f"pid {pid} runs Python {python[0]}.{python[1]}; dspy-top needs 3.11 or newer", UNSUPPORTED_PYTHON
        )
    return Target(pid=pid, exe=exe, command=command, python=python)


def read_command(pid: int) -> str:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return ""
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def alive(pid: int) -> bool:
    return (PROC / str(pid)).exists() and _state(pid) not in ("Z", "X")


def _state(pid: int) -> str | None:
    try:
        return (_field((PROC / str(pid) / "status").read_text(), "State") or ["?"])[0]
    except OSError:
        return None


def _field(status: str, name: str) -> list[str]:
    for line in status.splitlines():
        if line.startswith(name + ":"):
            return line.split()[1:]
    return []


def _python_version(maps: str, exe: str) -> tuple[int, int] | None:
    match = _LIBPYTHON.search(maps) or _PYTHON_EXE.search(os.path.basename(exe))
    return (int(match.group(1)), int(match.group(2))) if match else None


def _has_python_symbols(exe: str) -> bool:
    """A statically linked interpreter (no libpython) exports the C API from its executable."""
    try:
        with open(exe, "rb") as handle:
            return b"\0Py_AddPendingCall\0" in handle.read()
    except OSError:
        return False


def ptrace_hint(pid: int) -> str:
    """Why this machine refuses ptrace, and what to do about it (one line)."""
    scope = _read_int(PROC / "sys/kernel/yama/ptrace_scope")
    privileged = has_cap_sys_ptrace()
    if scope == 3:
        return (
            "kernel.yama.ptrace_scope is 3: no process may be traced until reboot; boot with a lower setting to attach"
        )
    if scope == 2 and not privileged:
        return (
            "kernel.yama.ptrace_scope is 2: only root may trace; run `sudo dspy-top attach` "
            "(or lower it: `sudo sysctl kernel.yama.ptrace_scope=1`)"
        )
    if scope == 1 and not privileged:
        return (
            "kernel.yama.ptrace_scope is 1: a process may trace only its own children; "
            "run `sudo sysctl kernel.yama.ptrace_scope=0` (or use sudo)"
        )
    if not _dumpable(pid):
        return (
            "the process is not dumpable (it called prctl(PR_SET_DUMPABLE, 0) or changed "
            "credentials); only root may trace it"
        )
    if not privileged and in_container():
        return (
            "this container has no CAP_SYS_PTRACE; start it with `--cap-add=SYS_PTRACE` "
            "(docker, podman) or the pod's securityContext capabilities"
        )
    return "ptrace refused by the kernel (a security module or seccomp policy); try with sudo"


def _dumpable(pid: int) -> bool:
    """A non-dumpable process's /proc files belong to root even though it runs as its user."""
    try:
        return (PROC / str(pid) / "environ").stat().st_uid == os.getuid() or os.getuid() == 0
    except OSError:
        return True


def has_cap_sys_ptrace() -> bool:
    try:
        effective = _field((PROC / "self/status").read_text(), "CapEff")
        return bool(int(effective[0], 16) >> CAP_SYS_PTRACE & 1)
    except (OSError, IndexError, ValueError):
        return False


def in_container() -> bool:
    if Path("/.dockerenv").exists() or Path("/run/.containerenv").exists():
        return True
    try:
        text = (PROC / "1/cgroup").read_text()
    except OSError:
        return False
    return any(word in text for word in ("docker", "kubepods", "containerd", "libpod", "lxc"))


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
