"""Which local sockets `LocalSockets` watches: a strategy it asks before every scan.

`Discovered` watches every dspy-top socket in the runtime directory, `Named` the ones given
with -p/--socket; `dspy-top run` passes `JobFamily` (the job and its descendants, family.py).
The source stays the same whichever it gets.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from dspy_top import client


class Targets(Protocol):
    """The sockets to watch now, each with the pid it belongs to (None when not known)."""

    # True: sockets come and go on their own (one that vanished had ended). False: they were
    # named, so a missing one is waited for and said so, and one no longer named is let go.
    discovering: bool

    def sockets(self, directory: Path) -> Iterable[tuple[Path, int | None]]:
        """Asked before every scan, from the collector's thread: it must not wait on anything."""


class Discovered:
    """Every instrumented process of this user, as its socket appears in `directory`."""

    discovering = True

    def sockets(self, directory: Path) -> Iterable[tuple[Path, int | None]]:
        return [(endpoint.socket_path, endpoint.pid) for endpoint in client.discover(directory)]


class Named:
    """The processes given by pid (their socket in `directory`) and the sockets given by path."""

    discovering = False

    def __init__(self, pids: Iterable[int] = (), sockets: Iterable[Path | str] = ()) -> None:
        self.pids = list(pids)
        self.paths = [Path(s) for s in sockets]

    def sockets(self, directory: Path) -> Iterable[tuple[Path, int | None]]:
        wanted: list[tuple[Path, int | None]] = [(client.socket_for_pid(pid, directory), pid) for pid in self.pids]
        wanted.extend((path, None) for path in self.paths)
        return wanted


def targets_for(pids: Iterable[int] = (), sockets: Iterable[Path | str] = ()) -> Targets:
    """-p and --socket name the targets; with neither, every socket is discovered."""
    pids, sockets = list(pids), list(sockets)
    return Named(pids, sockets) if pids or sockets else Discovered()
