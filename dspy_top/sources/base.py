"""What a source of processes is: the `Source` a new kind implements, the `Sink` it reports to.

A source is where processes come from: the local sockets (local.py), and next a recording
replayed, an SSH relay, ... The `Collector` (collector.py) runs every source in its one
thread and folds what they report into the `Fleet`; neither it nor the app knows which kind
of source it has. docs/sources.md says the same with an example.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, Protocol

from dspy_top.model.states import CONNECTING_STATUS
from dspy_top.protocol import Hello


class Readable(Protocol):
    """Anything `select` takes: a socket, a pipe, a `client.Connection`."""

    def fileno(self) -> int: ...


class CannotRequest(Exception):
    """A request a source cannot carry for this process; the message says why, to the user.

    A replay cannot stop anything, a process that ended has no payloads left to give, ...
    """


class Sink(Protocol):
    """What a source tells the collector about its processes, each named by its key.

    A key names one process's stream among every source's (a socket's path; a relay's
    `host:path`; a recording's path), and is the key of its row in the process list. Every
    method but `wake` is called from the collector's thread only, inside `Source.turn`:
    a source that works in threads of its own hands their results to its next turn.
    """

    def attach(self, key: str, pid: int | None = None, status: str = CONNECTING_STATUS) -> None:
        """A process the source watches and is attaching to, or waiting for (`status` says why).

        Its row appears in the process list now. Said again with a new status while it
        waits; said again after `closed` when a new stream comes for the same key (a
        process that ended is then kept apart from the new one that reuses its key).
        """

    def connected(self, key: str, hello: Hello) -> None:
        """The process said hello (checked with `schema.hello`): it is running."""

    def messages(self, key: str, messages: list[dict[str, Any]]) -> bool:
        """Protocol messages from the process, in order, as they came (the collector checks them).

        A `payload` message answers a `request_payload`. False when one was refused (a
        protocol error): the process is marked so and the source stops reading it, closing
        its stream without reporting it `closed`.
        """

    def closed(self, key: str, reason: str, refused: bool = False) -> None:
        """The process's stream is over: it could not be attached (failed), or it ended.

        After its `exit` message the process has ended and keeps its final numbers; without
        one it is lost (its last numbers are shown as not final); `reason` says why either way.
        `refused`: the source cut it for what it sent (a protocol error). Requests still
        waiting for it are answered with the reason.
        """

    def restart(self, key: str, hello: Hello | None, first: list[dict[str, Any]]) -> bool:
        """The process's stream starts over from another point (a replay seeking back, or far ahead).

        What was folded of it is forgotten and it is running again with `hello`, from `first`
        (protocol messages: a `snapshot` of the state at that point, usually), all in one hold
        of the fleet's lock, so no screen ever shows it empty in between; `messages` follow as
        usual. A key not known yet is simply connected; with no `hello` its row goes (at that
        point the process had not started). False when a message of `first` was refused, as
        for `messages`.
        """

    def let_go(self, key: str) -> bool:
        """The source no longer watches this process (a wrapper that turned out not to serve).

        True when its row went; False when it had spoken: its row and numbers stay, and the
        source keeps it (and may call `let_go` again later, to the same answer).
        """

    def host(self, name: str, state: str, status: str, retry_at: float | None = None) -> None:
        """The connection to another machine whose processes the source reports (an SSH relay).

        `state` is `connecting`, `connected` or `disconnected` (dspy_top/model/hosts.py);
        `status` says who answered or why not; `retry_at` (epoch seconds) when it is tried again.
        """

    def wake(self) -> None:
        """Run the source's `turn` soon: safe from any thread (a thread that connected, a timer)."""


class Source(ABC):
    """Where processes come from. The collector calls, from its one thread:

    `start(sink)` once; then in a loop `readers()` and `wake_at()`, a `select` over every
    source's readers until the earliest wake-up (at most a quarter second), and `turn(ready,
    now)`, on every pass, with those of its readers that are readable; `request_payload`,
    `request_stop` and `forget` when the user asks; `close()` once at the end.

    A source must never block the thread (no waiting on a socket, no sleep: a thread of its
    own for what must wait, as the local source's connecting threads). An exception it
    raises is counted and shown as the viewer's own fault; the collector carries on, and the
    other sources too.
    """

    sink: Sink
    # The machine whose processes it reports, as the user named it; None: this one. Each of its
    # rows shows it.
    host: str | None = None
    # Seconds batch mode's first print may wait for it to settle (another machine answers slower).
    settle_within: float = 4.0
    # Whether its processes' call events are each followed soon by a `stats` frame that counts them
    # (a live stream: the viewer shows a call once the totals count it, so the panes agree). A
    # recording keeps fewer stats than it has calls: its calls show as they come.
    stats_follow_calls: bool = True

    @property
    @abstractmethod
    def where(self) -> str:
        """What it watches, for the screen with nothing attached yet: a directory, a file, a host."""

    def start(self, sink: Sink) -> None:
        """Begin: `sink` is where everything the source learns is told."""
        self.sink = sink

    def readers(self) -> Sequence[Readable]:
        """What to select on now; one may carry many processes (a relay's pipe)."""
        return ()

    def wake_at(self) -> float | None:
        """When (`time.monotonic()`) the next `turn` is due without any reader being ready."""
        return None

    @abstractmethod
    def turn(self, ready: Sequence[Readable], now: float) -> None:
        """Read what is `ready`, do what is due at `now` (`time.monotonic()`), tell the sink."""

    def settled(self) -> bool:
        """True once it has looked for its processes, and none is halfway attached."""
        return True

    def request_payload(self, key: str, call_id: int) -> int:
        """Ask for one call's payload; the request id its `payload` answer will carry.

        The answer comes back through `Sink.messages` as a `payload` message with this `req`
        (a replay makes it from its file). Raises CannotRequest to answer at once that it cannot.
        """
        raise CannotRequest("this source cannot fetch payloads")

    def request_stop(self, key: str, reason: str) -> None:
        """Ask the process to stop (its next LM call ends its run); CannotRequest when it cannot."""
        raise CannotRequest("this source cannot stop a process")

    def forget(self, key: str) -> None:  # noqa: B027 (optional: a source that keeps nothing per process)
        """The user dismissed the process's row: a process still there may be attached again."""

    def close(self) -> None:  # noqa: B027 (optional: a source that holds nothing)
        """Let go of everything (connections, files, child processes); the collector has stopped."""
