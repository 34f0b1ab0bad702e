"""Which processes are the job's: the job and every descendant that serves dspy-top, at any depth.

`JobFamily` is the local sockets' targets strategy for `dspy-top run` (see targets.py): a
shell wrapper's python, console scripts, multiprocessing workers; other people's jobs in the
same runtime directory are left alone.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from dspy_top import client

JOB_RESCAN = 0.2  # seconds between looks for the job's sockets (short jobs must not be missed)


def parent_pid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            # pid (comm) state ppid ...; comm may hold spaces and parentheses
            return int(handle.read().rsplit(b")", 1)[1].split()[1])
    except FileNotFoundError:
        if os.path.isdir("/proc/self"):
            return None  # gone
    except (OSError, ValueError, IndexError):
        return None
    try:  # no /proc (macOS)
        out = subprocess.run(["ps", "-o", "ppid=", "-p", str(pid)], capture_output=True, text=True, timeout=2)
        return int(out.stdout.strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def descends_from(
    pid: int, root: int, known: set[int] = frozenset(), parent: Callable[[int], int | None] = parent_pid
) -> bool:
    """True when `pid` is `root`, or one of `known`, or a child of one of them (at any depth)."""
    for _ in range(64):
        if pid == root or pid in known:
            return True
        if pid <= 1:
            return False
        next_pid = parent(pid)
        if next_pid is None:
            return False
        pid = next_pid
    return False


class JobFamily:
    """The sockets of the job's pid and of its descendants; once a descendant serves, the job's own
    pid is no longer waited for when it is only a wrapper (a shell) that never serves."""

    discovering = False  # named: the job's pid is waited for, and a wrapper is let go once it is not named

    def __init__(self, root: int, parent: Callable[[int], int | None] = parent_pid) -> None:
        self.root = root
        self.parent = parent
        self.members: list[int] = []  # pids of the family that serve dspy-top, in the order found
        self._strangers: set[tuple[int, int]] = set()  # (pid, socket inode) of other people's jobs

    def sockets(self, directory: Path) -> Iterable[tuple[Path, int | None]]:
        for endpoint in client.discover(directory, cleanup=False):
            if endpoint.pid in self.members:
                continue
            try:
                seen = (endpoint.pid, endpoint.socket_path.stat().st_ino)
            except OSError:
                continue
            if seen in self._strangers:
                continue
            if descends_from(endpoint.pid, self.root, set(self.members), self.parent):
                self.members.append(endpoint.pid)
            else:
                self._strangers.add(seen)
        return [(client.socket_for_pid(pid, directory), pid) for pid in self.members or [self.root]]
