"""The other machines the viewer watches (`dspy-top --host`): each one's connection, as its source says."""

from __future__ import annotations

from dataclasses import dataclass

# What a host row can say about its connection.
HOST_CONNECTING = "connecting"  # the first try, not answered yet
HOST_CONNECTED = "connected"  # its relay said hello: its processes are in the list
HOST_DISCONNECTED = "disconnected"  # it could not be reached, or the connection broke; tried again at `retry_at`


@dataclass(frozen=True)
class HostRow:
    """One machine reached through a source of its own (an SSH relay)."""

    name: str  # as the user named it: `gpu-box`, `alice@10.0.0.5`
    state: str
    status: str  # what to tell the user: who answered, or why it is not connected
    since: float  # epoch seconds when it entered this state
    retry_at: float | None = None  # epoch seconds of the next try, while disconnected

    @property
    def problem(self) -> bool:
        return self.state == HOST_DISCONNECTED
