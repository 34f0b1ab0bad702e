"""`LocalSockets`: the instrumented processes of this machine, each on its Unix socket.

Which sockets is a strategy's choice (targets.py: discovered, named with -p/--socket, a
`dspy-top run` job's family). Each is attached in a short-lived thread (it waits for the
hello, and retries a busy process with backoff: `client.Connection`) so a silent socket
never stalls the others; the connections are read in the collector's thread.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspy_top import client, paths
from dspy_top.client import ConnectError, Connection
from dspy_top.protocol import Hello
from dspy_top.sources.base import CannotRequest, Readable, Source
from dspy_top.sources.targets import Targets, targets_for

RESCAN_EVERY = 1.0  # seconds between looks for new sockets
# Events taken from one connection per turn: a fast process must not starve the others, and
# what is read but not folded stays small.
READ_BATCH = 5000


@dataclass
class _Target:
    """A socket the source watches: discovered, or named."""

    key: str
    path: Path
    pid: int | None
    identity: tuple[int, int] | None = None  # (inode, mtime) of the socket file when last tried
    connecting: bool = False
    said: str | None = None  # why a named socket is still waited for, as last said
    dismissed: bool = False  # the user dismissed its process: no row for it until its socket is there again


@dataclass
class _Attached:
    """A connecting thread's result: a connection and its hello, or why there is none."""

    target: _Target
    connection: Connection | None = None
    hello: Hello | None = None
    reason: str = ""
    waiting: bool = False  # not the end yet: a busy process is retried, this says why


class LocalSockets(Source):
    """The processes serving the sockets `targets` names, in `directory` (default: the runtime dir)."""

    def __init__(
        self,
        targets: Targets,
        directory: Path | None = None,
        *,
        rescan_every: float = RESCAN_EVERY,
        connect_timeout: float = 3.0,
        retry_for: float = client.RETRY_FOR,
    ) -> None:
        self.targets = targets
        self.directory = directory
        self.rescan_every = rescan_every
        self.connect_timeout = connect_timeout
        self.retry_for = retry_for  # how long a busy process's socket is tried again
        self.scans = 0
        self._targets: dict[str, _Target] = {}
        self._connections: dict[str, Connection] = {}
        self._results: queue.SimpleQueue[_Attached] = queue.SimpleQueue()
        self._attaching = 0  # targets with a connecting thread whose result is not taken yet
        self._next_scan = 0.0
        self._closed = False

    @property
    def runtime_dir(self) -> Path:
        return self.directory or paths.runtime_dir()

    @property
    def where(self) -> str:
        return str(self.runtime_dir)

    def readers(self) -> Sequence[Readable]:
        return [c for c in self._connections.values() if c.fileno() >= 0]

    def wake_at(self) -> float:
        return self._next_scan

    def settled(self) -> bool:
        return self.scans > 0 and self._attaching == 0

    def turn(self, ready: Sequence[Readable], now: float) -> None:
        if now >= self._next_scan:
            self._next_scan = now + self.rescan_every
            self.scan()
        self._take_results()
        for connection in ready:
            key = self._key_of(connection)
            if key is not None:
                self._read(key, connection)
        for key, connection in list(self._connections.items()):
            if connection.fileno() < 0:
                self._broken(key, "connection closed")

    def close(self) -> None:
        self._closed = True
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()
        while True:
            try:
                result = self._results.get_nowait()
            except queue.Empty:
                return
            if result.connection is not None:
                result.connection.close()

    # --- requests -----------------------------------------------------------------------

    def request_payload(self, key: str, call_id: int) -> int:
        connection = self._connections.get(key)
        if connection is None:
            raise CannotRequest("the process has ended: its payloads are gone")
        try:
            return connection.request_payload(call_id)
        except ConnectError as exc:
            raise CannotRequest(f"cannot ask the process: {exc}") from None

    def request_stop(self, key: str, reason: str) -> None:
        connection = self._connections.get(key)
        try:
            if connection is None:
                raise ConnectError("not connected (has it ended?)")
            connection.request_stop(reason)
        except ConnectError as exc:
            raise CannotRequest(str(exc)) from None

    def forget(self, key: str) -> None:
        target = self._targets.get(key)
        if target is not None:
            target.identity = target.said = None
            target.dismissed = True
            if self.targets.discovering:
                del self._targets[key]
            self._next_scan = 0.0

    # --- finding and attaching ----------------------------------------------------------

    def scan(self) -> None:
        wanted: set[str] = set()
        for path, pid in self.targets.sockets(self.runtime_dir):
            key = str(path)
            wanted.add(key)
            target = self._targets.get(key)
            if target is None:
                target = self._targets[key] = _Target(key, path, pid)
            self._maybe_connect(target)
        if not self.targets.discovering:
            for key in [k for k in self._targets if k not in wanted]:
                self._let_go(key)
        self.scans += 1

    def _let_go(self, key: str) -> None:
        """A named target its strategy names no more (the shell wrapping a job): gone unless it spoke."""
        target = self._targets[key]
        if target.connecting or key in self._connections:
            return
        if self.sink.let_go(key):
            del self._targets[key]

    def _maybe_connect(self, target: _Target) -> None:
        if target.connecting or target.key in self._connections:
            return
        identity = _identity(target.path)
        if identity is None:
            self._missing(target)
            return
        if identity == target.identity:
            return  # this socket was tried and its stream is over: only a new one (or a dismiss) is tried
        target.identity = identity
        target.connecting = True
        target.dismissed = False
        self._attaching += 1
        self.sink.attach(target.key, target.pid)
        threading.Thread(target=self._connect, args=(target,), name="dspy-top-connect", daemon=True).start()

    def _missing(self, target: _Target) -> None:
        """A named target (-p/--socket) with no socket yet: say so, keep looking."""
        if self.targets.discovering or target.identity is not None or target.dismissed:
            # A socket that vanished: its process ended (or was never ours), and its row says how; or
            # the user dismissed that row (x), which must not come back as `no process N`.
            return
        pid = target.pid
        # --socket PATH with nothing there fails at once, as -p of a gone pid: nothing to wait for.
        gone = pid is None or not client.pid_alive(pid)
        if pid is None:
            reason = f"no socket at {target.path}"
        elif gone:
            reason = f"no process {pid}"
        else:
            reason = f"waiting for pid {pid} to serve dspy-top (run it with DSPY_TOP=1 or dspy_top.instrument())"
        if reason == target.said:
            return
        target.said = reason
        self.sink.attach(target.key, pid, reason)
        if gone:
            self.sink.closed(target.key, reason)

    def _connect(self, target: _Target) -> None:
        """In its own thread: attach, then hand the result to the next turn."""
        connection = Connection(target.path, timeout=self.connect_timeout, batches=True, retry_for=self.retry_for)

        def waiting(reason: str) -> None:  # a busy process: say why the row still says "connecting"
            self._hand_over(_Attached(target, reason=reason, waiting=True))

        try:
            hello = connection.connect(on_wait=waiting)
        except ConnectError as exc:
            self._hand_over(_Attached(target, reason=str(exc)))
        except Exception as exc:  # anything else a hostile socket provokes stays a status line
            connection.close()
            self._hand_over(_Attached(target, reason=f"cannot attach: {type(exc).__name__}: {exc}"))
        else:
            self._hand_over(_Attached(target, connection, hello))

    def _hand_over(self, result: _Attached) -> None:
        if self._closed and result.connection is not None:
            result.connection.close()
            return
        self._results.put(result)
        self.sink.wake()

    def _take_results(self) -> None:
        while True:
            try:
                result = self._results.get_nowait()
            except queue.Empty:
                return
            target = result.target
            if result.waiting:
                self.sink.attach(target.key, target.pid, result.reason)
                continue
            target.connecting = False
            self._attaching -= 1
            if result.connection is None or result.hello is None:
                self.sink.closed(target.key, result.reason)
                continue
            self._connections[target.key] = result.connection
            self.sink.connected(target.key, result.hello)
            self._read(target.key, result.connection)  # what came with the hello is read now

    # --- reading ------------------------------------------------------------------------------

    def _key_of(self, connection: Any) -> str | None:
        for key, candidate in self._connections.items():
            if candidate is connection:
                return key
        return None

    def _read(self, key: str, connection: Connection) -> None:
        try:
            self._read_from(key, connection)
        except Exception as exc:  # nothing one process sends may end the thread: mark it, read the others
            self._broken(key, f"the viewer could not read it ({type(exc).__name__}: {exc})", refused=True)

    def _read_from(self, key: str, connection: Connection) -> None:
        messages, error = _take(connection, READ_BATCH)
        if messages and not self.sink.messages(key, messages):
            self._drop(key)  # refused: the collector marked it
            return
        if error is not None:
            self._broken(key, str(error))
            return
        if connection.closed:
            # The data arrived with the close (an `exit` then EOF): find out why it closed.
            try:
                connection.poll(0.0)
            except ConnectError as exc:
                self._broken(key, str(exc))
            else:
                self._broken(key, "connection closed")

    def _drop(self, key: str) -> None:
        connection = self._connections.pop(key, None)
        if connection is not None:
            connection.close()

    def _broken(self, key: str, reason: str, refused: bool = False) -> None:
        """The connection ended (or is ended here, for what it sent): close it, tell the sink."""
        self._drop(key)
        self.sink.closed(key, reason, refused)


def local_sockets(
    pids: Iterable[int] = (), sockets: Iterable[Path | str] = (), directory: Path | None = None, **options: Any
) -> LocalSockets:
    """The local sockets the options name: -p and --socket, or with neither every one discovered."""
    return LocalSockets(targets_for(pids, sockets), directory, **options)


def _take(connection: Connection, limit: int) -> tuple[list[dict[str, Any]], ConnectError | None]:
    """Up to `limit` messages available now, and the error that ended the stream, if one did.

    Bounded, because a busy process is never quiet: one connection must not hold the reader.
    """
    try:
        return connection.poll(0.0, limit=limit), None
    except ConnectError as exc:
        return [], exc


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns)
