"""Talk to instrumented processes: find their sockets, connect, read typed events, ask for payloads.

Used by the viewer and the tests. Imports only the standard library, msgpack and
platformdirs (through `paths`): never dspy, never Textual.
"""

from __future__ import annotations

import errno
import itertools
import os
import select
import socket
import stat
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspy_top import paths, protocol, schema
from dspy_top.model.states import CONNECTING_STATUS
from dspy_top.protocol import Hello, ProtocolError

RETRY_FOR = 10.0  # seconds a busy process's socket is tried again before giving up
RETRY_FIRST = 0.02  # the first pause between tries; it doubles up to RETRY_MAX
RETRY_MAX = 0.5


class ConnectError(Exception):
    """A process could not be attached to, or the connection broke; the message says why."""


@dataclass(frozen=True)
class Endpoint:
    """A discovered instrumented process."""

    pid: int
    socket_path: Path


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def discover(directory: Path | None = None, cleanup: bool = True) -> list[Endpoint]:
    """Sockets of this user's running instrumented processes, by pid.

    Only in a directory that can be trusted (`paths.untrusted`), and only real sockets this
    user owns, named `<pid>.sock` (no symbolic links). With `cleanup`, sockets left behind by
    processes that died are removed.
    """
    directory = directory or paths.runtime_dir()
    if paths.untrusted(directory) is not None:
        return []
    try:
        entries = list(directory.iterdir())
    except OSError:
        return []
    found = []
    uid = os.getuid()
    for entry in entries:
        name = entry.name
        if not name.endswith(paths.SOCKET_SUFFIX) or not _digits(name[: -len(paths.SOCKET_SUFFIX)]):
            continue
        pid = int(name[: -len(paths.SOCKET_SUFFIX)])
        if name != f"{pid}{paths.SOCKET_SUFFIX}":
            continue  # "007.sock" and the like: not a name a process gives its socket
        try:
            info = os.lstat(entry)
        except OSError:
            continue
        if not stat.S_ISSOCK(info.st_mode) or info.st_uid != uid:
            continue
        if pid_alive(pid):
            found.append(Endpoint(pid, entry))
        elif cleanup:
            try:
                entry.unlink()
            except OSError:
                pass
    return sorted(found, key=lambda e: e.pid)


def _digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def socket_for_pid(pid: int, directory: Path | None = None) -> Path:
    return (directory or paths.runtime_dir()) / f"{pid}{paths.SOCKET_SUFFIX}"


class Connection:
    """One attached process. `connect()` returns its hello; then read events as they come.

    A process sends its call events in `calls` batches; by default each batch is handed
    over as the `call` messages it stands for. `batches=True` keeps them whole (the
    viewer does: it is much cheaper at high event rates).
    """

    def __init__(
        self, socket_path: Path | str, timeout: float = 3.0, batches: bool = False, retry_for: float = RETRY_FOR
    ) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self.batches = batches
        self.retry_for = retry_for
        self.hello: Hello | None = None
        self._sock: socket.socket | None = None
        self._reader = protocol.FrameReader()
        self._pending: deque[dict[str, Any]] = deque()
        self._requests = itertools.count(1)
        self.closed = False
        self._broken: ConnectError | None = None

    def __enter__(self) -> Connection:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    def connect(self, on_wait: Callable[[str], None] | None = None) -> Hello:
        """Attach: the socket must be a real socket (no symbolic link) served by this user.

        A process that is busy accepting (its listen queue full, or not listening yet) is
        tried again with backoff for up to `retry_for` seconds; `on_wait` hears why meanwhile.
        """
        sock, owner = self._open(on_wait)
        uid = peer_uid(sock)
        if uid is None:
            uid = owner  # no SO_PEERCRED on this system: the socket file's owner is the next best witness
        if uid != os.getuid():
            sock.close()
            raise ConnectError(f"{self.socket_path} is served by another user (uid {uid}): not trusted, not attached")
        self._sock = sock
        try:
            first = self._next(self.timeout)
        except ConnectError:
            self.close()
            raise
        if first is None:
            self.close()
            raise ConnectError(f"{self.socket_path}: no hello within {self.timeout:g}s (not a dspy-top socket?)")
        if first["t"] == protocol.ERROR:
            self.close()
            raise ConnectError(f"refused by the process: {first.get('reason')}")
        if first["t"] != protocol.HELLO:
            self.close()
            raise ConnectError(f"{self.socket_path}: expected a hello, got {first['t']!r}")
        try:
            self.hello = schema.hello(first)
        except ProtocolError as exc:
            self.close()
            raise ConnectError(str(exc)) from None
        try:
            sock.sendall(protocol.encode({"t": protocol.HELLO, "v": protocol.PROTOCOL_VERSION, "client": "dspy-top"}))
        except OSError:
            # Our hello is optional. A short job may have sent everything (snapshot, exit) and
            # closed before it went out: what it sent is still readable, then EOF.
            pass
        sock.setblocking(False)
        return self.hello

    def _open(self, on_wait: Callable[[str], None] | None) -> tuple[socket.socket, int]:
        """A connected socket (retrying a busy process) and the uid owning the socket file."""
        path = self.socket_path
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            raise ConnectError(f"no socket at {path} (the process has exited)") from None
        except OSError as exc:
            raise ConnectError(f"cannot look at {path}: {exc.strerror or exc}") from None
        if stat.S_ISLNK(info.st_mode):
            raise ConnectError(f"{path} is a symbolic link: dspy-top follows none")
        if not stat.S_ISSOCK(info.st_mode):
            raise ConnectError(f"{path} is not a socket")
        deadline = time.monotonic() + self.retry_for
        delay = RETRY_FIRST
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(path))
                return sock, info.st_uid
            except FileNotFoundError:
                sock.close()
                raise ConnectError(f"no socket at {path} (the process has exited)") from None
            except PermissionError:
                sock.close()
                raise ConnectError(f"permission denied on {path} (another user's process?)") from None
            except OSError as exc:
                sock.close()
                busy = self._busy(exc)
                if busy is None:
                    if isinstance(exc, ConnectionRefusedError):
                        raise ConnectError(f"nothing listens on {path} (stale socket of an exited process)") from None
                    raise ConnectError(f"cannot connect to {path}: {exc.strerror or exc}") from None
            if time.monotonic() + delay > deadline:
                raise ConnectError(f"{path}: {busy}; gave up after {self.retry_for:g}s of retrying")
            if on_wait is not None:
                on_wait(f"{CONNECTING_STATUS} {busy}; retrying for up to {self.retry_for:g}s")
            time.sleep(delay)
            delay = min(RETRY_MAX, delay * 2)

    def _busy(self, exc: OSError) -> str | None:
        """Why a failed connect is worth trying again, or None when it is not."""
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
            return "the process's listen queue is full (many viewers connecting at once)"
        if exc.errno == errno.ECONNREFUSED:
            name = self.socket_path.name.removesuffix(paths.SOCKET_SUFFIX)
            if _digits(name) and pid_alive(int(name)):
                return f"pid {int(name)} is alive but not accepting yet"
        return None

    def close(self) -> None:
        self.closed = True
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None

    # --- reading ---------------------------------------------------------------------

    def poll(self, timeout: float = 0.0, limit: int | None = None) -> list[dict[str, Any]]:
        """Messages available now (waiting up to `timeout` for the first one), about `limit` events.

        A busy process is never quiet: pass `limit` to take a bounded batch and come back.
        It counts events, a `calls` batch as many as its rows, so the last message taken may
        go over it by up to one batch (500 calls).
        Raises ConnectError when the process closes the connection or sends garbage; messages
        that arrived before that are returned first and the error is raised on the next call.
        """
        if self._broken is not None and not self._pending:
            raise self._broken
        out: list[dict[str, Any]] = []
        taken = 0
        while self._pending and (limit is None or taken < limit):
            message = self._pending.popleft()
            out.append(message)
            taken += message_size(message)
        if out:
            timeout = 0.0
        while limit is None or taken < limit:
            try:
                message = self._next(timeout)
            except ConnectError as exc:
                if not out:
                    raise
                self._broken = exc  # hand over what arrived first (the exit message); raise next time
                return out
            if message is None:
                return out
            out.append(message)
            taken += message_size(message)
            timeout = 0.0
        return out

    def events(self, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Messages as they arrive, until the process ends (an `exit` message, then EOF)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if remaining == 0.0:
                return
            try:
                batch = self.poll(timeout=remaining if remaining is not None else 1.0)
            except ConnectError:
                return
            yield from batch

    def _next(self, timeout: float) -> dict[str, Any] | None:
        if self._pending:
            return self._pending.popleft()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._accept(self._reader.feed(b""))
            except ProtocolError as exc:
                self.close()
                raise ConnectError(f"process sent bad data: {exc}") from None
            if self._pending:
                return self._pending.popleft()
            if self._sock is None:
                raise ConnectError("connection closed")
            remaining = deadline - time.monotonic()
            try:
                ready, _, _ = select.select([self._sock], [], [], max(0.0, remaining))
            except (OSError, ValueError):
                raise ConnectError("connection closed") from None
            if not ready:
                return None
            try:
                data = self._sock.recv(1 << 20)
            except (TimeoutError, BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                self.close()
                if exc.errno in (errno.ECONNRESET, errno.EPIPE):
                    raise ConnectError("the process closed the connection") from None
                raise ConnectError(f"connection failed: {exc.strerror or exc}") from None
            if not data:
                self.close()
                raise ConnectError("the process closed the connection")
            try:
                self._accept(self._reader.feed(data))
            except ProtocolError as exc:
                self.close()
                raise ConnectError(f"process sent bad data: {exc}") from None

    def _accept(self, messages: list[dict[str, Any]]) -> None:
        if self.batches:
            self._pending.extend(messages)
            return
        for message in messages:
            if message.get("t") == protocol.CALLS:
                try:
                    self._pending.extend(protocol.call_dicts(message["fields"], message["rows"]))
                except (KeyError, TypeError, ValueError):
                    raise protocol.ProtocolError("malformed calls batch") from None
            else:
                self._pending.append(message)

    # --- requests --------------------------------------------------------------------

    def request_payload(self, call_id: int) -> int:
        """Ask for one call's full payload; the answer arrives as a `payload` message with this `req`."""
        request_id = next(self._requests)
        self._send({"t": protocol.GET_PAYLOAD, "req": request_id, "id": call_id})
        return request_id

    def request_stop(self, reason: str) -> None:
        self._send({"t": protocol.STOP, "reason": reason})

    def get_payload(self, call_id: int, timeout: float = 5.0) -> dict[str, Any] | None:
        """Blocking helper: the payload for `call_id`, or None if the process no longer holds it.

        Other messages read meanwhile are kept for the next `poll`.
        """
        request_id = self.request_payload(call_id)
        deadline = time.monotonic() + timeout
        held: list[dict[str, Any]] = []
        try:
            while time.monotonic() < deadline:
                message = self._next(max(0.0, deadline - time.monotonic()))
                if message is None:
                    break
                if message["t"] == protocol.PAYLOAD and message.get("req") == request_id:
                    return message.get("payload") if message.get("found") else None
                held.append(message)
        finally:
            self._pending.extendleft(reversed(held))
        raise ConnectError(f"no answer for call {call_id} within {timeout:g}s")

    def _send(self, message: dict[str, Any]) -> None:
        if self._sock is None:
            raise ConnectError("not connected")
        frame = protocol.encode(message)
        view = memoryview(frame)
        deadline = time.monotonic() + self.timeout
        while view:
            try:
                sent = self._sock.send(view)
                view = view[sent:]
            except (BlockingIOError, InterruptedError):
                if time.monotonic() > deadline:
                    raise ConnectError("the process is not reading requests") from None
                select.select([], [self._sock], [], 0.05)
            except OSError as exc:
                self.close()
                raise ConnectError(f"connection failed: {exc.strerror or exc}") from None


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process serving a connected Unix socket (SO_PEERCRED), or None where unknown."""
    so_peercred = getattr(socket, "SO_PEERCRED", None)
    if so_peercred is None:
        return None  # no SO_PEERCRED here (macOS): the caller falls back to the socket file's owner
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, so_peercred, struct.calcsize("3i"))
    except OSError:
        return None
    return struct.unpack("3i", creds)[1]


def message_size(message: dict[str, Any]) -> int:
    """How many events a message stands for."""
    if message.get("t") == protocol.CALLS:
        rows = message.get("rows")
        return len(rows) if isinstance(rows, list) else 1
    return 1
