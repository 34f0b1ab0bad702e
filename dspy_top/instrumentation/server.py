"""Serves a process's recorder on its Unix socket, from one daemon thread, never blocking the job.

Any number of viewers may connect. Each gets a hello and a snapshot, then the live
stream. A viewer that reads too slowly loses call events (counted and reported to it),
never the exact counters, and never slows the job: all I/O is non-blocking and lives here.
"""

from __future__ import annotations

import os
import selectors
import socket
import struct
import threading
import time
from typing import Any, Callable

from dspy_top import paths, protocol
from dspy_top.instrumentation.recorder import Recorder

# How often queued events are drained and sent. Each tick the thread takes the GIL from the
# job's threads; under Evaluate(num_threads=8) on 2 cores, ticking every 50 ms cost the
# job about twice what every 250 ms does (benchmarks/README.md). New viewers, payload
# requests and stop are served at once, not on a tick.
TICK = 0.25
STATS_EVERY = 0.5  # how often counters go out while something changes
HEARTBEAT_EVERY = 2.0  # how often they go out when nothing does
# Per-viewer send buffer: past SOFT_LIMIT call events are dropped for that viewer;
# past HARD_LIMIT (a viewer stopped for a long time) it is disconnected.
SOFT_LIMIT = int(os.environ.get("DSPY_TOP_VIEWER_BUFFER", 4 * 1024 * 1024))
HARD_LIMIT = max(16 * SOFT_LIMIT, 64 * 1024 * 1024)
MAX_REQUEST = 64 * 1024
CALLS_PER_FRAME = 500


class ViewerConnection:
    """One connected viewer: its socket, its unsent bytes and what it missed."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.outbox = bytearray()
        self.reader = protocol.FrameReader(max_frame=MAX_REQUEST)
        self.dropped = 0
        self.closing = False
        self.since = 0  # events up to this sequence number were in its snapshot

    def queue(self, frame: bytes, droppable: bool, events: int = 1) -> None:
        if droppable and len(self.outbox) > SOFT_LIMIT:
            self.dropped += events
            return
        self.outbox += frame
        if len(self.outbox) > HARD_LIMIT:
            self.closing = True


class SocketServer:
    """The listening socket and the thread that feeds every viewer."""

    def __init__(self, recorder: Recorder, hello: Callable[[], dict[str, Any]],
                 materialize: Callable[[Any], dict[str, Any]], on_stop: Callable[[str], None] | None = None) -> None:
        self.recorder = recorder
        self.hello = hello
        self.materialize = materialize
        self.on_stop = on_stop
        self.path = paths.socket_path()
        self.viewers: dict[int, ViewerConnection] = {}
        self._selector: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._last_stats_version = -1
        self._last_stats_at = 0.0
        self.ever_attached = False
        self.last_attach_at = float("-inf")

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        directory = paths.ensure_private_dir(self.path.parent)
        self.path = directory / self.path.name
        if self.path.exists() or self.path.is_symlink():
            self.path.unlink()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # Created 0600 from the start: no window in which another user could connect.
        old_umask = os.umask(0o177)
        try:
            listener.bind(str(self.path))
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        listener.listen(16)
        listener.setblocking(False)
        self._listener = listener
        self._selector = selectors.DefaultSelector()
        self._selector.register(listener, selectors.EVENT_READ, None)
        # Lets stop() wake the loop at once instead of waiting out a tick.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name="dspy-top-server", daemon=True)
        self._thread.start()

    def wait_for_viewer(self, timeout: float) -> bool:
        """At exit of a short job: give a viewer that is about to attach the chance to."""
        deadline = time.monotonic() + timeout
        while not self.ever_attached and time.monotonic() < deadline and self._thread is not None:
            time.sleep(0.02)
        return self.ever_attached

    def stop(self, final: dict[str, Any] | None = None, timeout: float = 0.1) -> None:
        """Send a last message to every viewer within `timeout`, then close and unlink."""
        if self._thread is None:
            return
        self._final = final
        self._stopping.set()
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._stopped.wait(timeout + 0.5)
        self._thread = None

    def abandon_after_fork(self) -> None:
        """In a forked child: close the parent's descriptors without touching its socket file."""
        for viewer in list(self.viewers.values()):
            _quiet_close(viewer.sock)
        self.viewers.clear()
        for sock in (self._listener, getattr(self, "_wake_r", None), getattr(self, "_wake_w", None)):
            if sock is not None:
                _quiet_close(sock)
        if self._selector is not None:
            try:
                self._selector.close()
            except Exception:
                pass
        self._listener = None
        self._selector = None
        self._thread = None

    # --- the loop ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._serve_once(TICK)
            self._finish()
        except Exception:
            self.recorder.count_internal_error()
        finally:
            self._close_all()
            self._stopped.set()

    def _serve_once(self, timeout: float) -> None:
        selector = self._selector
        for key, mask in selector.select(timeout):
            if key.data is None:
                self._accept()
                continue
            if key.data == "wake":
                try:
                    self._wake_r.recv(64)
                except OSError:
                    pass
                continue
            viewer: ViewerConnection = key.data
            if mask & selectors.EVENT_READ:
                self._read(viewer)
            if mask & selectors.EVENT_WRITE and not viewer.closing:
                self._write(viewer)
        self._broadcast_events()
        self._broadcast_stats()
        for viewer in list(self.viewers.values()):
            if viewer.outbox and not viewer.closing:
                self._write(viewer)
            self._update_interest(viewer)

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.recorder.count_internal_error()
            return
        if not _same_user(sock):
            _quiet_close(sock)
            return
        sock.setblocking(False)
        self.ever_attached = True
        self.last_attach_at = time.monotonic()
        viewer = ViewerConnection(sock)
        self.viewers[sock.fileno()] = viewer
        viewer.queue(protocol.encode(self.hello()), droppable=False)
        snapshot = self.recorder.snapshot()
        snapshot["stats"]["dropped_viewer"] = 0
        viewer.since = snapshot["seq"]
        viewer.queue(protocol.encode({"t": protocol.SNAPSHOT, **snapshot}), droppable=False)
        self._selector.register(sock, selectors.EVENT_READ, viewer)
        self._write(viewer)

    def _read(self, viewer: ViewerConnection) -> None:
        try:
            data = viewer.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(viewer)
            return
        try:
            for message in viewer.reader.feed(data):
                self._handle(viewer, message)
        except protocol.ProtocolError as exc:
            self._refuse(viewer, str(exc))

    def _handle(self, viewer: ViewerConnection, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == protocol.HELLO:
            if message.get("v") != protocol.PROTOCOL_VERSION:
                self._refuse(viewer, f"viewer speaks protocol version {message.get('v')!r}; "
                                     f"this process speaks {protocol.PROTOCOL_VERSION}")
        elif kind == protocol.GET_PAYLOAD:
            call_id = message.get("id")
            source = self.recorder.payload(call_id) if isinstance(call_id, int) else None
            reply: dict[str, Any] = {"t": protocol.PAYLOAD, "req": message.get("req"), "id": call_id,
                                     "found": source is not None}
            if source is None and isinstance(call_id, int):
                reason = self.recorder.payload_missing_reason(call_id)
                if reason:
                    reply["reason"] = reason
            if source is not None:
                try:
                    reply["payload"] = self.materialize(source)
                except Exception:
                    self.recorder.count_internal_error()
                    reply["found"] = False
            try:
                frame = protocol.encode(reply)
            except protocol.ProtocolError:
                frame = protocol.encode({"t": protocol.PAYLOAD, "req": message.get("req"), "id": call_id,
                                         "found": False, "reason": "payload too large to send"})
            viewer.queue(frame, droppable=False)
        elif kind == protocol.STOP and self.on_stop is not None:
            self.on_stop(str(message.get("reason") or "stop requested by a viewer"))
        # Unknown message types are skipped: newer viewers may ask for more.

    def _refuse(self, viewer: ViewerConnection, reason: str) -> None:
        """Tell the viewer why, then close: bad input never reaches the job."""
        try:
            viewer.sock.send(protocol.encode({"t": protocol.ERROR, "reason": reason}))
        except OSError:
            pass
        self._drop(viewer)

    def _write(self, viewer: ViewerConnection) -> None:
        try:
            sent = viewer.sock.send(viewer.outbox)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(viewer)
            return
        del viewer.outbox[:sent]

    def _update_interest(self, viewer: ViewerConnection) -> None:
        if viewer.closing:
            self._drop(viewer)
            return
        if viewer.sock.fileno() not in self.viewers:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if viewer.outbox else 0)
        try:
            self._selector.modify(viewer.sock, events, viewer)
        except (KeyError, ValueError, OSError):
            self._drop(viewer)

    def _drop(self, viewer: ViewerConnection) -> None:
        fileno = viewer.sock.fileno()
        if fileno in self.viewers and self.viewers[fileno] is viewer:
            del self.viewers[fileno]
            try:
                self._selector.unregister(viewer.sock)
            except (KeyError, ValueError, OSError):
                pass
        viewer.closing = True
        _quiet_close(viewer.sock)

    def _broadcast_events(self) -> None:
        events = self.recorder.drain()
        if not events or not self.viewers:
            return
        rows: list[tuple] = []
        for event in events:
            if type(event) is tuple:  # a call event, as a CALL_FIELDS row
                rows.append(event)
                if len(rows) >= CALLS_PER_FRAME:
                    self._send_calls(rows)
                    rows = []
                continue
            if rows:
                self._send_calls(rows)
                rows = []
            try:
                frame = protocol.encode(event)
            except protocol.ProtocolError:
                self.recorder.count_internal_error()
                continue
            droppable = event["t"] in (protocol.TOOL, protocol.EVAL_PROGRESS)
            seq = event.get("seq", 0)
            for viewer in self.viewers.values():
                if seq > viewer.since:
                    viewer.queue(frame, droppable)
        if rows:
            self._send_calls(rows)

    def _send_calls(self, rows: list[tuple]) -> None:
        """Consecutive call events go out as one `calls` frame: far cheaper to encode and decode."""
        frame = None
        try:
            for viewer in self.viewers.values():
                if rows[0][0] > viewer.since:
                    if frame is None:
                        frame = _calls_frame(rows)
                    viewer.queue(frame, droppable=True, events=len(rows))
                elif rows[-1][0] > viewer.since:  # it attached mid-batch: only what its snapshot lacks
                    fresh = [row for row in rows if row[0] > viewer.since]
                    viewer.queue(_calls_frame(fresh), droppable=True, events=len(fresh))
        except protocol.ProtocolError:  # a batch over the frame limit: lost, counted, the server goes on
            self.recorder.count_internal_error()

    def _broadcast_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        changed = self.recorder.version != self._last_stats_version
        due = now - self._last_stats_at >= (STATS_EVERY if changed else HEARTBEAT_EVERY)
        if not (force or due) or not self.viewers:
            return
        self._last_stats_version = self.recorder.version
        self._last_stats_at = now
        stats = self.recorder.stats()
        for viewer in self.viewers.values():
            if len(viewer.outbox) > SOFT_LIMIT and not force:
                continue  # the next one replaces it
            viewer.queue(protocol.encode({"t": protocol.STATS, **stats, "dropped_viewer": viewer.dropped}),
                         droppable=False)

    def _finish(self) -> None:
        """At exit: drain what is queued, send the final numbers, give viewers a moment."""
        self._broadcast_events()
        final = getattr(self, "_final", None) or {}
        stats = self.recorder.stats()
        for viewer in self.viewers.values():
            viewer.queue(protocol.encode({"t": protocol.EXIT, **final, "stats": {
                **stats, "dropped_viewer": viewer.dropped}}), droppable=False)
        # A healthy viewer takes a few ms; one that attached a moment ago may still be reading
        # its snapshot, so it gets up to a second rather than losing the final numbers.
        recent = time.monotonic() - self.last_attach_at < 1.0
        deadline = time.monotonic() + (1.0 if recent else 0.08)
        while any(v.outbox for v in self.viewers.values()) and time.monotonic() < deadline:
            for viewer in list(self.viewers.values()):
                if viewer.outbox:
                    self._write(viewer)
            if any(v.outbox for v in self.viewers.values()):
                time.sleep(0.002)
        for viewer in list(self.viewers.values()):
            # Read what the viewer sent (its hello) before closing: closing a socket with
            # unread input sends a reset, and the viewer could lose the exit message to it.
            try:
                while viewer.sock.recv(65536):
                    pass
            except OSError:
                pass
            try:
                viewer.sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _close_all(self) -> None:
        for viewer in list(self.viewers.values()):
            self._drop(viewer)
        for sock in (self._listener, self._wake_r, self._wake_w):
            if sock is not None:
                _quiet_close(sock)
        self._listener = None
        try:
            if self.path.exists():
                self.path.unlink()
        except OSError:
            pass
        if self._selector is not None:
            try:
                self._selector.close()
            except Exception:
                pass


def _calls_frame(rows: list[tuple]) -> bytes:
    return protocol.encode({"t": protocol.CALLS, "fields": protocol.CALL_FIELDS, "rows": rows})


def _same_user(sock: socket.socket) -> bool:
    """Peer credentials: only this user's viewers may attach."""
    so_peercred = getattr(socket, "SO_PEERCRED", None)
    if so_peercred is None:
        return True  # the socket file's 0600 mode already limits who can connect
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, so_peercred, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
    except OSError:
        return False
    return uid == os.getuid()


def _quiet_close(sock: socket.socket) -> None:
    try:
        sock.close()
    except OSError:
        pass
