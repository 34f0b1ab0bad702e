"""Attaches to instrumented processes and folds their messages into a `Fleet`, from one daemon thread.

One thread selects over every connection; connecting (which waits for a hello) happens
in short-lived threads so a silent socket never stalls the others. The UI never waits
on it: it takes `fleet.snapshot()` on its own timer. Payload answers come back through
a callback (the app turns them into a message). No Textual here, so batch mode uses it too.
"""

from __future__ import annotations

import os
import queue
import select
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from dspy_top import client, paths, schema
from dspy_top.client import ConnectError, Connection
from dspy_top.model import Fleet
from dspy_top.model.payloads import PayloadAnswer
from dspy_top.model.process import CONNECTING, ENDED, FAILED, LOST
from dspy_top.viewer.targets import Targets, targets_for

RESCAN_EVERY = 1.0  # seconds between looks for new sockets
PAYLOAD_TIMEOUT = 5.0
# Events taken from one connection per turn, and folded per hold of the fleet's lock (a
# `calls` batch counts as its rows): a fast process must not starve the others, nor keep
# the screen waiting for the lock, and what is read but not folded stays small.
READ_BATCH = 5000
FOLD_CHUNK = 1000


@dataclass
class _Target:
    """A socket the collector watches: discovered, or named with -p/--socket."""

    key: str
    path: Path
    pid: int | None
    identity: tuple[int, int] | None = None  # (inode, mtime) of the socket file when last tried
    connecting: bool = False
    dismissed: bool = False  # the user dismissed its process: no row for it until its socket is there again


class Collector:
    """Finds, attaches to and reads every target process; folds into `fleet` under `fleet.lock`."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        directory: Path | None = None,
        pids: list[int] | None = None,
        sockets: list[Path | str] | None = None,
        rescan_every: float = RESCAN_EVERY,
        connect_timeout: float = 3.0,
        retry_for: float = client.RETRY_FOR,
        on_payload: Callable[[PayloadAnswer], None] | None = None,
        targets: Targets | None = None,
    ) -> None:
        self.fleet = fleet
        self.directory = directory
        self.pids = list(pids or [])
        self.sockets = [Path(s) for s in sockets or []]
        # Which sockets to watch (viewer/targets.py): discovered, named with -p/--socket, or a
        # caller's own (`dspy-top run`: the job's process family).
        self.targets = targets or targets_for(self.pids, self.sockets)
        self.discovering = self.targets.discovering
        self.rescan_every = rescan_every
        self.connect_timeout = connect_timeout
        self.retry_for = retry_for  # how long a busy process's socket is tried again
        self.on_payload = on_payload
        self.on_notice: Callable[[str], None] | None = None  # something the user should hear about
        self._targets: dict[str, _Target] = {}
        self._connections: dict[str, Connection] = {}
        self._ready: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._pending: dict[tuple[str, int], tuple[int, float]] = {}  # (key, req) -> (call id, deadline)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_scan = 0.0
        self.scans = 0
        self.faults = 0  # errors of the viewer's own that the thread survived

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> "Collector":
        self._thread = threading.Thread(target=self._run, name="dspy-top-collector", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(2.0)
        for connection in self._connections.values():
            connection.close()
        self._connections.clear()
        for sock in (self._wake_r, self._wake_w):
            try:
                sock.close()
            except OSError:
                pass

    @property
    def runtime_dir(self) -> Path:
        return self.directory or paths.runtime_dir()

    def settled(self) -> bool:
        """True once a scan ran and every target is attached (with its snapshot) or given up on."""
        if self.scans == 0:
            return False
        with self.fleet.lock:
            for target in self._targets.values():
                if target.connecting:
                    return False
                process = self.fleet.processes.get(target.key)
                if process is not None and process.state not in (FAILED, LOST, ENDED) and process.events == 0:
                    return False
        return True

    def wait_settled(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.settled():
                return True
            time.sleep(0.01)
        return self.settled()

    # --- requests from the UI thread ---------------------------------------------------

    def request_payload(self, process: str, call_id: int) -> None:
        """Ask a process for a call's payload; the answer goes to `on_payload`."""
        self._ready.put(("payload", (process, call_id)))
        self._wake()

    def request_stop(self, process: str, reason: str) -> None:
        """Ask a process to stop (its next LM call ends the run); a failure goes to `on_notice`."""
        self._ready.put(("stop", (process, reason)))
        self._wake()

    def dismiss(self, process: str) -> bool:
        """Forget an ended or broken process (a socket still there is tried again)."""
        with self.fleet.lock:
            dropped = self.fleet.dismiss(process)
        if dropped:
            self._ready.put(("forget", process))
            self._wake()
        return dropped

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    # --- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._turn()
            except Exception as exc:  # a fault of the viewer's own: say so, and keep watching the rest
                self.faults += 1
                self._notice(f"dspy-top's collector hit an error and carries on: {type(exc).__name__}: {exc}")
                self._stop.wait(0.1)

    def _turn(self) -> None:
        now = time.monotonic()
        if now >= self._next_scan:
            self._next_scan = now + self.rescan_every
            self._scan()
        self._expire_requests(now)
        readers: list[Any] = [self._wake_r]
        readers.extend(c for c in self._connections.values() if c.fileno() >= 0)
        timeout = max(0.0, min(self._next_scan - time.monotonic(), 0.25))
        try:
            ready, _, _ = select.select(readers, [], [], timeout)
        except (OSError, ValueError):
            ready = []
            self._prune_closed()
        for item in ready:
            if item is self._wake_r:
                self._drain_wake()
            else:
                self._read(item)
        self._take_ready()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _take_ready(self) -> None:
        while True:
            try:
                kind, value = self._ready.get_nowait()
            except queue.Empty:
                return
            if kind == "connected":
                key, connection = value
                self._connections[key] = connection
                self._read(connection, key)
            elif kind == "payload":
                self._ask_payload(*value)
            elif kind == "stop":
                self._ask_stop(*value)
            elif kind == "forget":
                target = self._targets.get(value)
                if target is not None:
                    target.identity = None
                    target.dismissed = True
                    if self.discovering:
                        del self._targets[value]
                    self._next_scan = 0.0

    def _read(self, connection: Connection, key: str | None = None) -> None:
        key = key or self._key_of(connection)
        if key is None:
            return
        try:
            self._fold_from(connection, key)
        except Exception as exc:  # nothing one process sends may end this thread: mark it, read the others
            self._broken(key, f"the viewer could not read it ({type(exc).__name__}: {exc})", protocol=True)

    def _fold_from(self, connection: Connection, key: str) -> None:
        messages, error = _take(connection, READ_BATCH)
        # Checked here, outside the fleet's lock: the fold under it only adds up typed values.
        records, refused = _check(messages)
        folded = []
        for record in records:
            if type(record) is schema.PayloadRecord:
                self._answer_payload(key, record)
            else:
                folded.append(record)
        for chunk in _chunks(folded, FOLD_CHUNK):
            with self.fleet.lock:
                self.fleet.fold_many(key, chunk)
            time.sleep(0)  # let a refresh waiting for the lock take it now
        if refused is not None:
            self._broken(key, refused, protocol=True)
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

    def _key_of(self, connection: Connection) -> str | None:
        for key, candidate in self._connections.items():
            if candidate is connection:
                return key
        return None

    def _broken(self, key: str, reason: str, protocol: bool = False) -> None:
        """The connection ended (or is ended here, after a protocol error): mark the process, fail its requests."""
        connection = self._connections.pop(key, None)
        if connection is not None:
            connection.close()
        with self.fleet.lock:
            self.fleet.failed(key, reason, protocol)
        for pending_key in [k for k in self._pending if k[0] == key]:
            call_id, _ = self._pending.pop(pending_key)
            self._deliver(PayloadAnswer(key, call_id, None, f"the process connection closed ({reason})"))

    def _prune_closed(self) -> None:
        for key, connection in list(self._connections.items()):
            if connection.fileno() < 0:
                self._broken(key, "connection closed")

    # --- finding and attaching ----------------------------------------------------------

    def _scan(self) -> None:
        wanted: set[str] = set()
        for path, pid in self.targets.sockets(self.runtime_dir):
            key = str(path)
            wanted.add(key)
            target = self._targets.get(key)
            if target is None:
                target = self._targets[key] = _Target(key, path, pid)
            self._maybe_connect(target)
        if not self.discovering:
            for key in [k for k in self._targets if k not in wanted]:
                self._let_go(key)
        self.scans += 1

    def _let_go(self, key: str) -> None:
        """A named target its strategy names no more (the shell wrapping a job): gone unless it attached."""
        target = self._targets[key]
        if target.connecting or key in self._connections:
            return
        with self.fleet.lock:
            process = self.fleet.processes.get(key)
            if process is not None and process.events > 0:
                return  # it spoke: its numbers stay
            del self._targets[key]
            if process is not None:
                self.fleet.failed(key, "no longer watched")
                self.fleet.dismiss(key)

    def _maybe_connect(self, target: _Target) -> None:
        if target.connecting or target.key in self._connections:
            return
        identity = _identity(target.path)
        with self.fleet.lock:
            process = self.fleet.processes.get(target.key)
            state = process.state if process is not None else None
        if state in (ENDED,) and identity == target.identity:
            return
        if identity is None:
            self._missing(target, state)
            return
        if state in (FAILED, LOST) and identity == target.identity:
            return  # the same broken socket: try again only when it is replaced (or dismissed)
        if state == ENDED:
            # A new process reuses the pid (and so the socket name): keep the ended one apart.
            with self.fleet.lock:
                old = self.fleet.processes.pop(target.key)
                old.key = f"{target.key}#{int(old.ended_at or 0)}"
                self.fleet.processes[old.key] = old
        target.identity = identity
        target.connecting = True
        target.dismissed = False
        with self.fleet.lock:
            process = self.fleet.attach(target.key, target.pid)
            process.state, process.status = CONNECTING, "connecting…"
        threading.Thread(target=self._connect, args=(target,), name="dspy-top-connect", daemon=True).start()

    def _missing(self, target: _Target, state: str | None) -> None:
        """A named target (-p/--socket) with no socket yet: say so, keep looking."""
        if self.discovering or target.dismissed:
            return  # a discovered socket that vanished (its process ended), or a process the user dismissed
        if state not in (None, CONNECTING):
            return
        pid = target.pid
        alive = pid is not None and client.pid_alive(pid)
        if pid is not None and not alive:
            reason = f"no process {pid}"
        elif pid is not None:
            reason = f"waiting for pid {pid} to serve dspy-top (run it with DSPY_TOP=1 or dspy_top.instrument())"
        else:
            reason = f"no socket at {target.path}"  # --socket PATH: nothing to wait for, as -p of a gone pid
        with self.fleet.lock:
            process = self.fleet.attach(target.key, pid)
            process.status = reason
            if not alive:
                process.state = FAILED

    def _connect(self, target: _Target) -> None:
        connection = Connection(target.path, timeout=self.connect_timeout, batches=True, retry_for=self.retry_for)

        def waiting(reason: str) -> None:  # a busy process: say why the row still says "connecting"
            with self.fleet.lock:
                self.fleet.attach(target.key, target.pid).status = reason
                self.fleet.version += 1

        try:
            hello = connection.connect(on_wait=waiting)
        except ConnectError as exc:
            with self.fleet.lock:
                self.fleet.attach(target.key, target.pid)
                self.fleet.failed(target.key, str(exc))
            target.connecting = False
            self._wake()
            return
        except Exception as exc:  # anything else a hostile socket provokes stays a status line
            connection.close()
            with self.fleet.lock:
                self.fleet.attach(target.key, target.pid)
                self.fleet.failed(target.key, f"cannot attach: {type(exc).__name__}: {exc}")
            target.connecting = False
            self._wake()
            return
        with self.fleet.lock:
            self.fleet.connected(target.key, hello)
        self._ready.put(("connected", (target.key, connection)))
        target.connecting = False
        self._wake()

    # --- payloads --------------------------------------------------------------------------

    def _ask_payload(self, key: str, call_id: int) -> None:
        connection = self._connections.get(key)
        if connection is None:
            self._deliver(PayloadAnswer(key, call_id, None, "the process has ended: its payloads are gone"))
            return
        try:
            request = connection.request_payload(call_id)
        except ConnectError as exc:
            self._deliver(PayloadAnswer(key, call_id, None, f"cannot ask the process: {exc}"))
            return
        self._pending[(key, request)] = (call_id, time.monotonic() + PAYLOAD_TIMEOUT)

    def _ask_stop(self, key: str, reason: str) -> None:
        connection = self._connections.get(key)
        try:
            if connection is None:
                raise ConnectError("not connected (has it ended?)")
            connection.request_stop(reason)
        except ConnectError as exc:
            self._notice(f"cannot ask the process to stop: {exc}")

    def _notice(self, text: str) -> None:
        if self.on_notice is not None:
            try:
                self.on_notice(text)
            except Exception:
                pass  # the app is gone

    def _answer_payload(self, key: str, record: schema.PayloadRecord) -> None:
        pending = self._pending.pop((key, record.req), None)
        if pending is None:
            return
        call_id, _ = pending
        if record.found and record.payload is not None:
            self._deliver(PayloadAnswer(key, call_id, dict(record.payload)))
        else:
            reason = record.reason or "the process no longer holds this call (only its most recent ones are kept)"
            self._deliver(PayloadAnswer(key, call_id, None, reason))

    def _expire_requests(self, now: float) -> None:
        for pending_key, (call_id, deadline) in list(self._pending.items()):
            if now > deadline:
                del self._pending[pending_key]
                self._deliver(PayloadAnswer(pending_key[0], call_id, None,
                                            f"no answer from the process within {PAYLOAD_TIMEOUT:g}s"))

    def _deliver(self, answer: PayloadAnswer) -> None:
        if self.on_payload is not None:
            try:
                self.on_payload(answer)
            except Exception:
                pass  # the app is gone (shutting down); nobody is waiting


def _check(messages: list[dict[str, Any]]) -> tuple[list[schema.Record], str | None]:
    """The checked records of the messages before the first one the schema refuses, and why it was refused."""
    records = []
    for message in messages:
        try:
            record = schema.parse(message)
        except schema.BadMessage as exc:
            return records, f"malformed {message.get('t')!r} message: {exc}"
        if record is not None:
            records.append(record)
    return records, None


def _chunks(records: list[schema.Record], events: int) -> Iterator[list[schema.Record]]:
    """Consecutive runs of records holding about `events` events each (a batch counts its calls)."""
    chunk: list[schema.Record] = []
    size = 0
    for record in records:
        chunk.append(record)
        size += len(record.rows) if type(record) is schema.CallsRecord else 1
        if size >= events:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


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
