"""The other machines (`--host`) as the screen, batch text and JSON say them: their connection, each row's host."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from dspy_top.viewer import format as fmt
from dspy_top.viewer.terminal import inert

if TYPE_CHECKING:  # for annotations only: the first frame (status line, process list) loads no model
    from dspy_top.model import ProcessRow, Snapshot
    from dspy_top.model.hosts import HostRow

LOCAL = "local"  # what the host column says of this machine's processes
HOST_WIDTH = 16  # the host column's width at most


def host_of(process: ProcessRow) -> str:
    return process.host or LOCAL


def host_width(snapshot: Snapshot) -> int:
    """The host column's width: the longest name shown, within HOST_WIDTH; 0 when no host was asked for."""
    if not snapshot.hosts:
        return 0
    names = [LOCAL, *(h.name for h in snapshot.hosts)]
    return min(HOST_WIDTH, max(len(name) for name in names))


def host_cell(name: str, width: int) -> str:
    """A batch text row's host column (empty without --host): the name, inert, cut in the middle to `width`."""
    return f"{fmt.middle(inert(name), width):<{width}} " if width else ""


def host_state(host: HostRow, now: float, countdown: bool = True) -> str:
    """`gpu-box connected`, or `gpu-box disconnected: why (retrying in 4s)`.

    A screen that is not redrawn every second says when (`retrying at 14:03:22`), not how long.
    """
    if not host.problem:
        return f"{host.name} {host.state}"
    return f"{host.name} {host.state}: {host.status} ({retrying(host, now, countdown)})"


def retrying(host: HostRow, now: float, countdown: bool = True) -> str:
    if host.retry_at is None or host.retry_at <= now:
        return "retrying now"
    if not countdown:
        return f"retrying at {fmt.clock(host.retry_at, millis=False)}"
    return f"retrying in {math.ceil(host.retry_at - now)}s"


def hosts_line(snapshot: Snapshot) -> str | None:
    """The batch text's `Hosts:` line, or None without --host."""
    if not snapshot.hosts:
        return None
    return "Hosts: " + "; ".join(host_state(host, snapshot.at) for host in snapshot.hosts)


def hosts_json(snapshot: Snapshot) -> list[dict[str, Any]]:
    return [
        {"host": h.name, "state": h.state, "status": h.status, "since": h.since, "retry_at": h.retry_at}
        for h in snapshot.hosts
    ]


class HostNotes:
    """What batch mode says on stderr about the hosts: each problem once, and when a host is back."""

    def __init__(self) -> None:
        self._said: dict[str, str] = {}

    def new(self, snapshot: Snapshot) -> list[str]:
        lines = []
        for host in snapshot.hosts:
            said = self._said.get(host.name)
            if host.problem and said != host.status:
                lines.append(f"{host.name}: {host.status}")
                self._said[host.name] = host.status
            elif not host.problem and said is not None and host.state == "connected":
                lines.append(f"{host.name}: connected again ({host.status})")
                del self._said[host.name]
        return lines
