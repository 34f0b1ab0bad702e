"""Serves a process's recorder on its Unix socket, from one daemon thread, never blocking the job.

Each tick the thread drains the recorder's events, redacts them (redact.py: one pass for
everything that leaves the process), encodes each once into the stream (stream.py), and
each viewer reads the stream from its own position (viewers.py). Any number of viewers
may connect, up to a cap; each gets a hello and a snapshot, then the stream. A viewer that
reads too slowly loses call events (counted and reported to it), never the exact counters,
and slows neither the job nor the other viewers. Nothing a viewer sends, no message the
job produces and no shortage of file descriptors ends this thread: a message that cannot
be encoded is dropped and counted, and accepting pauses while descriptors are short.

Another consumer of the same events (a recording written to a file) is a tap: each redacted
message that goes into the stream (events, `calls` batches, stats, exit) is handed to every
callable in `self.taps` first, on this thread, so it sees every event, never falls behind and
never gets a credential. `join()` starts one on this thread, from a snapshot taken at the
same instant as the events before it; `self.tickers` run on every tick after the messages
(a recording writes its file there). While there is a tap, a `stats` message covers exactly
the call events before it in the stream (drained with it under one lock), so a consumer can
add the call events after it to its counters. Nothing is encoded while no viewer reads the
stream.
"""

from __future__ import annotations

import errno
import operator
import os
import resource
import select
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dspy_top import paths, protocol
from dspy_top.config import JobSettings
from dspy_top.instrumentation import payload
from dspy_top.instrumentation.recorder import KeptCall, Recorder
from dspy_top.instrumentation.redact import Redactor
from dspy_top.instrumentation.stream import CALLS, KEPT, STATS, FrameStream
from dspy_top.instrumentation.viewers import ViewerConnection

# How often queued events are drained and sent. Each tick the thread takes the GIL from the
# job's threads; under Evaluate(num_threads=8) on 2 cores, ticking every 50 ms cost the
# job about twice what every 250 ms does (benchmarks/README.md). New viewers, payload
# requests and stop are served at once, not on a tick.
TICK = 0.25
STATS_EVERY = 0.5  # how often counters go out while something changes
HEARTBEAT_EVERY = 2.0  # how often they go out when nothing does
CALLS_PER_FRAME = 500
# Connections waiting to be accepted: a burst of viewers (a script starting many) must
# not find the queue full. The kernel caps it (net.core.somaxconn).
LISTEN_BACKLOG = max(128, socket.SOMAXCONN)
ACCEPT_BURST = 64  # connections taken per wake-up
# A viewer is refused when its descriptor would leave the job fewer than this many free.
FD_RESERVE = 32
# Out of descriptors: stop accepting for a while (doubling up to the last) instead of spinning.
ACCEPT_PAUSE = (0.05, 2.0)
# At exit: how long viewers still reading their backlog get, how long a quiet one holds that
# up, and how long the exit frame itself then gets.
EXIT_FLUSH = 1.0
EXIT_QUIET = 0.1
EXIT_LAST = 0.2
# Text limits of what goes out besides payloads (which keep 256 KiB per string).
EVENT_TEXT = 4096
MAX_PAYLOAD_TEXT = 256 * 1024
# Call rows: the error message and the names that are redacted (protocol.CALL_FIELDS).
ERROR_AT = protocol.CALL_FIELDS.index("error_message")
NAMES_AT = tuple(protocol.CALL_FIELDS.index(name) for name in ("path", "model", "response_model"))
RESPONSE_MODEL_AT = protocol.CALL_FIELDS.index("response_model")
_ERROR_OF = operator.itemgetter(ERROR_AT)
_RESPONSE_MODEL_OF = operator.itemgetter(RESPONSE_MODEL_AT)


@dataclass
class CatchUp:
    """What a new viewer gets before the stream: built once, reused until the next stats tick."""

    hello: bytes
    snapshot: bytes
    position: int  # the stream position it covers up to
    built_at: float


class SocketServer:
    """The listening socket and the thread that feeds every viewer."""

    def __init__(self, recorder: Recorder, hello: Callable[[], dict[str, Any]],
                 materialize: Callable[[Any], dict[str, Any]], on_stop: Callable[[str], None] | None = None,
                 settings: JobSettings | None = None, secrets_of: Callable[[Any], list[str]] | None = None) -> None:
        settings = settings or JobSettings()
        self.recorder = recorder
        self.hello = hello
        self.materialize = materialize
        self.secrets_of = secrets_of
        self.on_stop = on_stop
        self.max_viewers = settings.max_viewers
        # What a viewer may lag behind before it loses call events; what it may have waiting
        # for it alone (payloads, rare events) before it is let go.
        self.stream = FrameStream(settings.viewer_buffer)
        self.private_limit = max(16 * settings.viewer_buffer, 64 * 1024 * 1024)
        self.redactor = Redactor()
        # Called with each redacted message as it goes into the stream (see the module docstring),
        # and on each tick after them (`force`: write now, the process may be ended at once).
        self.taps: list[Callable[[dict[str, Any]], None]] = []
        self.tickers: list[Callable[[bool], None]] = []
        self._joining: list[Callable[[dict[str, Any], dict[str, Any]], None]] = []
        # Call rows are checked without per-row work where it can be avoided (see _clean_rows).
        self._names_checked = (-1, 0)  # (redactor generation, cells checked)
        self._names_clean = True
        self._clean_models: set[str | None] = {None}
        self.path = paths.socket_path()
        self.viewers: dict[int, ViewerConnection] = {}
        self._catch_up: CatchUp | None = None
        self._selector: selectors.BaseSelector | None = None
        self._listener: socket.socket | None = None
        self._listening = False
        self._accept_paused_until = 0.0
        self._accept_pause = ACCEPT_PAUSE[0]
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._pushes: list[threading.Event] = []
        self._final: dict[str, Any] | None = None
        self._last_stats_version = -1
        self._last_stats_at = 0.0
        self.ever_attached = False

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
        listener.listen(LISTEN_BACKLOG)
        listener.setblocking(False)
        self._listener = listener
        self._selector = selectors.DefaultSelector()
        self._listen(True)
        # Lets stop() wake the loop at once instead of waiting out a tick.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread = threading.Thread(target=self._run, name="dspy-top-server", daemon=True)
        self._thread.start()

    def wait_for_viewer(self, timeout: float) -> bool:
        """At exit of a short job: give a viewer that is about to attach the chance to."""
        deadline = time.monotonic() + timeout
        while not self.ever_attached and time.monotonic() < deadline and self._thread is not None:
            time.sleep(0.02)
        return self.ever_attached

    def stop(self, final: dict[str, Any] | None = None) -> None:
        """Send the final numbers and an exit frame to every viewer (bounded in time), then close and unlink."""
        if self._thread is None:
            return
        self._final = final
        self._stopping.set()
        self._wake()
        self._stopped.wait(EXIT_FLUSH + EXIT_LAST + 1.0)
        self._thread = None

    def push_totals(self, timeout: float = 0.1) -> None:
        """Send the current totals to every viewer now, and write them to a recording; return once
        written (or after `timeout`).

        For a process that may end without warning (a multiprocessing pool worker, which its
        pool terminates), called when it finishes a piece of work."""
        if self._thread is None or not (self.viewers or self.tickers):
            return
        done = threading.Event()
        self._pushes.append(done)
        self._wake()
        done.wait(timeout)

    def join(self, start: Callable[[dict[str, Any], dict[str, Any]], None]) -> None:
        """Start another consumer of the stream on this thread, at its next tick: `start(hello,
        snapshot)` gets the redacted hello and a snapshot of the process (its state at that
        instant, every event before it included) and adds its taps and tickers."""
        self._joining.append(start)
        if self._thread is not None:
            self._wake()

    def abandon_after_fork(self) -> None:
        """In a forked child: close the parent's descriptors without touching its socket file."""
        for viewer in list(self.viewers.values()):
            viewer.close()
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
        self.stream = FrameStream(self.stream.limit)
        self._catch_up = None
        self._pushes = []

    def _wake(self) -> None:
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    # --- the loop ------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    self._serve_once(TICK)
                except Exception:
                    # A bug here must cost a tick, not the server (and never spin).
                    self.recorder.count_internal_error()
                    self._stopping.wait(TICK)
            try:
                self._finish()
            except Exception:
                self.recorder.count_internal_error()
        finally:
            self._close_all()
            self._stopped.set()

    def _serve_once(self, timeout: float) -> None:
        if not self._listening and time.monotonic() >= self._accept_paused_until:
            self._listen(True)
        for key, mask in self._selector.select(timeout):
            if key.data is None:
                self._accept()
            elif key.data == "wake":
                try:
                    self._wake_r.recv(4096)
                except OSError:
                    pass
            else:
                viewer: ViewerConnection = key.data
                if mask & selectors.EVENT_READ:
                    self._read(viewer)
                if mask & selectors.EVENT_WRITE:
                    viewer.blocked = False
        pushes, self._pushes = self._pushes, []  # those asked for before this tick's stats
        if self._joining:
            self._start_joining()
        self._publish_events()
        self._publish_stats(force=bool(pushes))
        self._trim()
        self._write_all()
        self._tick(force=bool(pushes))
        for done in pushes:
            done.set()

    def _start_joining(self) -> None:
        joining, self._joining = self._joining, []
        self.redactor.refresh()
        events, snapshot = self.recorder.drain_and_snapshot()
        if events and (self._streaming() or self.taps):
            self._publish(events)  # to those already here: the snapshot covers them for the newcomers
        hello = self.redacted_hello()
        message = self._snapshot_message(snapshot)
        for start in joining:
            try:
                start(hello, message)
            except Exception:
                self.recorder.count_internal_error()

    def _tick(self, force: bool = False) -> None:
        for ticker in self.tickers:
            try:
                ticker(force)
            except Exception:  # a consumer's failure is its own, never the viewers'
                self.recorder.count_internal_error()

    # --- viewers arriving ------------------------------------------------------------

    def _listen(self, on: bool) -> None:
        try:
            if on:
                self._selector.register(self._listener, selectors.EVENT_READ, None)
            else:
                self._selector.unregister(self._listener)
            self._listening = on
        except (KeyError, ValueError, OSError):
            pass

    def _accept(self) -> None:
        for _ in range(ACCEPT_BURST):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The connection stays queued and the listener stays readable: polling it
                    # again at once would spin. Leave it until descriptors may be free again.
                    self._listen(False)
                    self._accept_paused_until = time.monotonic() + self._accept_pause
                    self._accept_pause = min(2 * self._accept_pause, ACCEPT_PAUSE[1])
                else:
                    self.recorder.count_internal_error()
                return
            self._accept_pause = ACCEPT_PAUSE[0]
            try:
                self._admit(sock)
            except Exception:
                self.recorder.count_internal_error()
                _quiet_close(sock)

    def _admit(self, sock: socket.socket) -> None:
        if not _same_user(sock):
            _quiet_close(sock)
            return
        sock.setblocking(False)
        reason = None
        if len(self.viewers) >= self.max_viewers:
            reason = (f"too many viewers: {len(self.viewers)} are attached to this process "
                      f"(DSPY_TOP_MAX_VIEWERS={self.max_viewers})")
        elif sock.fileno() >= _open_file_limit() - FD_RESERVE:
            reason = "this process is close to its limit of open files; try again later"
        if reason is not None:
            try:
                sock.send(protocol.encode({"t": protocol.ERROR, "reason": reason}))
            except OSError:
                pass
            _quiet_close(sock)
            return
        catch_up = self._catch_up_now()
        viewer = ViewerConnection(sock, catch_up.position, self.private_limit)
        viewer.send_first(catch_up.hello)
        viewer.send_first(catch_up.snapshot)
        self._selector.register(sock, selectors.EVENT_READ, viewer)
        viewer.interest = selectors.EVENT_READ
        self.viewers[viewer.fileno] = viewer
        self.ever_attached = True
        self._write(viewer)

    def _catch_up_now(self) -> CatchUp:
        """The hello and snapshot for a new viewer: the cached ones while still current."""
        cached = self._catch_up
        now = time.monotonic()
        if cached is not None and now - cached.built_at < STATS_EVERY and cached.position >= self.stream.first:
            return cached
        self.redactor.refresh()  # a key set in the job's environment since the last look
        events, snapshot = self.recorder.drain_and_snapshot()
        self._publish(events)  # before the snapshot's position: viewers already here get them
        try:
            hello = self._encode(self.hello(), protocol.HELLO)
        except Exception:
            self.recorder.count_internal_error()
            hello = None
        if hello is None:  # never leave a viewer without a hello
            hello = protocol.encode({"t": protocol.HELLO, "v": protocol.PROTOCOL_VERSION, "pid": os.getpid()})
        cached = self._catch_up = CatchUp(hello, self._encode_snapshot(snapshot), self.stream.end, now)
        return cached

    def redacted_hello(self) -> dict[str, Any]:
        """The process's hello as it leaves the process (for a consumer that is not a viewer)."""
        try:
            hello = self._redact(self.hello(), protocol.HELLO, EVENT_TEXT)
        except Exception:
            self.recorder.count_internal_error()
            hello = None
        return hello or {"t": protocol.HELLO, "v": protocol.PROTOCOL_VERSION, "pid": os.getpid()}

    def _snapshot_message(self, snapshot: dict[str, Any]) -> dict[str, Any]:
        """A `snapshot` message, redacted, from `Recorder.drain_and_snapshot`'s snapshot."""
        stats = self.redactor.value(snapshot["stats"], EVENT_TEXT)
        rows = [self._redact_row(row) for row in snapshot["rows"]]
        return {"t": protocol.SNAPSHOT, "stats": stats, "seq": snapshot["seq"],
                "calls": protocol.call_dicts(protocol.CALL_FIELDS, rows)}

    def _encode_snapshot(self, snapshot: dict[str, Any]) -> bytes:
        stats = self.redactor.value({**snapshot["stats"], "dropped_viewer": 0}, EVENT_TEXT)
        rows = [self._redact_row(row) for row in snapshot["rows"]]
        while True:
            try:
                return protocol.encode({"t": protocol.SNAPSHOT, "stats": stats, "seq": snapshot["seq"],
                                        "calls": protocol.call_dicts(protocol.CALL_FIELDS, rows)})
            except protocol.ProtocolError:
                # Too large (a long history of long error messages): the newest calls that fit.
                self.recorder.count_internal_error()
                if not rows:
                    return protocol.encode({"t": protocol.SNAPSHOT, "seq": snapshot["seq"], "calls": [],
                                            "stats": {"totals": stats.get("totals"), "dropped_viewer": 0}})
                rows = rows[len(rows) // 2 + 1:] if len(rows) > 1 else []

    # --- what viewers send ------------------------------------------------------------

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
                self._refuse(viewer, f"viewer speaks protocol version {str(message.get('v'))[:40]}; "
                                     f"this process speaks {protocol.PROTOCOL_VERSION}")
        elif kind == protocol.GET_PAYLOAD:
            viewer.send_first(self._payload_reply(message))
        elif kind == protocol.STOP and self.on_stop is not None:
            reason = message.get("reason")
            try:
                self.on_stop(str(reason)[:200] if reason else "stop requested by a viewer")
            except Exception:
                self.recorder.count_internal_error()
        # Unknown message types are skipped: newer viewers may ask for more.

    def _payload_reply(self, message: dict[str, Any]) -> bytes:
        call_id = message.get("id")
        request = message.get("req") if isinstance(message.get("req"), (int, str, type(None))) else None
        call_id = call_id if isinstance(call_id, int) else None
        source = self.recorder.payload(call_id) if call_id is not None else None
        reply: dict[str, Any] = {"t": protocol.PAYLOAD, "req": request, "id": call_id, "found": source is not None}
        if source is None and call_id is not None:
            reason = self.recorder.payload_missing_reason(call_id)
            if reason:
                reply["reason"] = reason
        if source is not None:
            try:
                reply["payload"] = self._payload_source(source)
            except Exception:
                self.recorder.count_internal_error()
                reply["found"] = False
        frame = self._encode(reply, "payload", limit=None)
        if frame is None:
            frame = protocol.encode({"t": protocol.PAYLOAD, "req": request, "id": call_id,
                                     "found": False, "reason": "payload too large to send"})
        return frame

    def payload_of(self, source: Any) -> dict[str, Any]:
        """A kept call's payload, redacted exactly as a viewer gets it in a `payload` reply."""
        if type(source) is KeptCall and self.materialize is payload.materialize:
            # A recording's every call: the same result, built without the payload's map first.
            if self.secrets_of is not None:
                self.redactor.learn(self.secrets_of(source))
            return payload.redacted(self.redactor, source, MAX_PAYLOAD_TEXT)
        return self.redactor.value({"payload": self._payload_source(source)}, MAX_PAYLOAD_TEXT)["payload"]

    def _payload_source(self, source: Any) -> dict[str, Any]:
        """A kept call's payload, not yet redacted; the credentials its LM was given are learned
        first, so that the pass redacts them wherever they appear."""
        if self.secrets_of is not None:
            self.redactor.learn(self.secrets_of(source))
        return self.materialize(source)

    def _refuse(self, viewer: ViewerConnection, reason: str) -> None:
        """Tell the viewer why, then close: bad input never reaches the job."""
        try:
            viewer.sock.send(protocol.encode({"t": protocol.ERROR, "reason": reason}))
        except OSError:
            pass
        self._drop(viewer)

    # --- the stream ---------------------------------------------------------------------

    def _publish_events(self) -> None:
        events = self.recorder.drain()
        if events and (self._streaming() or self.taps):
            self._publish(events)  # else nobody to send them to: a viewer arriving later gets a snapshot

    def _streaming(self) -> bool:
        """Whether anyone reads the encoded stream: a viewer, or one about to (a cached catch-up)."""
        return bool(self.viewers) or self._catch_up is not None

    def _publish(self, events: list[dict[str, Any] | tuple]) -> None:
        rows: list[tuple] = []
        for event in events:
            if type(event) is tuple:  # a call event, as a CALL_FIELDS row
                rows.append(event)
                if len(rows) >= CALLS_PER_FRAME:
                    self._publish_calls(rows)
                    rows = []
                continue
            if rows:
                self._publish_calls(rows)
                rows = []
            frame = self._encode(event, event.get("t"), tap=True)
            if frame is None:
                continue
            if event["t"] in (protocol.TOOL, protocol.EVAL_PROGRESS):
                self.stream.append(frame, CALLS, 1)
            else:
                self.stream.append(frame, KEPT)
        if rows:
            self._publish_calls(rows)

    def _publish_calls(self, rows: list[tuple]) -> None:
        """Consecutive call events go out as one `calls` frame: far cheaper to encode and decode."""
        message = {"t": protocol.CALLS, "fields": protocol.CALL_FIELDS, "rows": self._clean_rows(rows)}
        if self.taps:
            self._tap(message)
            if not self._streaming():
                return
        try:
            frame = protocol.encode(message)
        except protocol.ProtocolError:
            # Over the frame limit: the batch is lost for every viewer, counted (an empty frame
            # each viewer counts as dropped calls), and the server goes on.
            self.recorder.count_internal_error()
            self.stream.append(b"", CALLS, len(rows))
            return
        self.stream.append(frame, CALLS, len(rows))

    def _clean_rows(self, rows: list[tuple]) -> list[tuple]:
        """The rows redacted, at almost no cost per row: a row's path and model are those of
        its (path, model) cell, each checked once when the cell appears, so per row only
        its error message (rare) and its response model (a set lookup) are looked at."""
        redactor = self.redactor
        cells = self.recorder.cells
        generation, checked = self._names_checked
        if generation != redactor.generation:
            checked, self._names_clean, self._clean_models = 0, True, {None}
        if len(cells) != checked:
            keys = list(cells)  # one C call: safe while the job's threads add cells
            self._names_clean = self._names_clean and all(
                redactor.is_plain(name) for key in keys[checked:] for name in key if isinstance(name, str))
            self._names_checked = (redactor.generation, len(keys))
        if not self._names_clean:
            return [self._redact_row(row) for row in rows]
        clean_models = self._clean_models
        # The usual batch: no error, known response models; looked at in C, the rows kept as they are.
        if not any(map(_ERROR_OF, rows)) and clean_models.issuperset(map(_RESPONSE_MODEL_OF, rows)):
            return rows
        return [row if not row[ERROR_AT] and row[RESPONSE_MODEL_AT] in clean_models else self._redact_row(row)
                for row in rows]

    def _redact_row(self, row: tuple) -> tuple:
        model = row[RESPONSE_MODEL_AT]
        if type(model) is str and len(self._clean_models) < 1000 and self.redactor.is_plain(model):
            self._clean_models.add(model)
        return self.redactor.row(row, ERROR_AT, NAMES_AT)

    def _publish_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        changed = self.recorder.version != self._last_stats_version
        due = now - self._last_stats_at >= (STATS_EVERY if changed else HEARTBEAT_EVERY)
        if not (force or due) or not (self.viewers or self.taps):
            return
        self._last_stats_version = self.recorder.version
        self._last_stats_at = now
        self.redactor.refresh()  # a key set in the job's environment since
        if self.taps:
            # At one instant with the events before it, for a recording: the stats covers exactly
            # those, so it can add the calls after it to its totals (viewers need not, and their
            # events keep the pace of the tick).
            events, stats = self.recorder.drain_and_stats()
            if events:
                self._publish(events)
        else:
            stats = self.recorder.stats()
        frame = self._encode({"t": protocol.STATS, **stats}, "stats", tap=True)
        if frame is not None:
            self.stream.append(frame, STATS)

    def _encode(self, message: dict[str, Any], what: Any, limit: int | None = EVENT_TEXT,
                tap: bool = False) -> bytes | None:
        """`message` redacted (and, with `tap`, handed to the taps) and encoded; None if it cannot be
        sent (counted), or, with `tap`, when no viewer reads the stream."""
        try:
            message = self._redact(message, what, limit or 256 * 1024)
        except Exception:
            self.recorder.count_internal_error()
            return None
        if tap and self.taps:
            self._tap(message)
        if tap and not self._streaming():
            return None
        try:
            return protocol.encode(message)
        except Exception:
            self.recorder.count_internal_error()
            return None

    def _redact(self, message: dict[str, Any], what: Any, limit: int) -> dict[str, Any]:
        if what == protocol.HELLO:
            message = {**message, "argv": self.redactor.argv(message.get("argv") or [])}
        return self.redactor.value(message, limit)

    def _tap(self, message: dict[str, Any]) -> None:
        for tap in self.taps:
            try:
                tap(message)
            except Exception:  # a consumer's failure is its own, never the viewers'
                self.recorder.count_internal_error()

    def _trim(self) -> None:
        cached = self._catch_up
        if cached is not None and time.monotonic() - cached.built_at >= STATS_EVERY:
            cached = self._catch_up = None
        self.stream.trim(self._readers(), keep_from=cached.position if cached is not None else None)
        if cached is not None and cached.position < self.stream.first:
            self._catch_up = None

    def _readers(self) -> list[ViewerConnection]:
        """Everything that reads the stream: the viewers (a recording would be one more)."""
        return list(self.viewers.values())

    # --- writing ----------------------------------------------------------------------------

    def _write_all(self) -> None:
        stream = self.stream
        for viewer in list(self.viewers.values()):
            if not viewer.closing and not viewer.blocked and viewer.pending(stream):
                self._write(viewer)
            self._update_interest(viewer)

    def _write(self, viewer: ViewerConnection) -> int:
        sent = 0
        for _ in range(16):  # a bounded turn per viewer: the others are waiting
            try:
                sent_now = viewer.write(self.stream)
            except OSError:
                self._drop(viewer)
                return sent
            sent += sent_now
            if viewer.blocked or not viewer.pending(self.stream) or not sent_now:
                break
        return sent

    def _update_interest(self, viewer: ViewerConnection) -> None:
        if viewer.closing:
            self._drop(viewer)
            return
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if viewer.blocked else 0)
        if wanted == viewer.interest:
            return
        try:
            self._selector.modify(viewer.sock, wanted, viewer)
            viewer.interest = wanted
        except (KeyError, ValueError, OSError):
            self._drop(viewer)

    def _drop(self, viewer: ViewerConnection) -> None:
        if self.viewers.get(viewer.fileno) is viewer:
            del self.viewers[viewer.fileno]
            try:
                self._selector.unregister(viewer.sock)
            except (KeyError, ValueError, OSError):
                pass
        viewer.close()

    # --- exit -----------------------------------------------------------------------------------

    def _finish(self) -> None:
        """At exit: the final numbers first to every viewer, then its backlog while time allows,
        then the exit frame, which reaches even a viewer that stopped reading."""
        if self._joining:
            self._start_joining()  # a consumer asked for just before the exit still gets it
        events, stats = self.recorder.drain_and_stats()
        if events and (self._streaming() or self.taps):
            self._publish(events)
        final = self._final or {}
        exit_message = self.redactor.value({"t": protocol.EXIT, **final, "stats": stats}, EVENT_TEXT)
        if self.taps:
            self._tap(dict(exit_message))
            self._tick(force=True)
        viewers = [v for v in self.viewers.values() if not v.closing]
        if not viewers:
            return
        stats_frame = self._encode({"t": protocol.STATS, **stats}, "stats")
        for viewer in viewers:
            # Room for the last frames even in a socket its viewer stopped emptying.
            _grow_send_buffer(viewer.sock)
            viewer.blocked = False
            if stats_frame is not None:
                try:
                    viewer.send_first(protocol.encode_with(stats_frame, {"dropped_viewer": viewer.dropped}))
                except protocol.ProtocolError:
                    pass
        finished: set[int] = set()
        deadline = time.monotonic() + EXIT_FLUSH
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < EXIT_QUIET:
            progress = self._flush_exiting(viewers, finished, exit_message)
            if len(finished) == len(viewers) and not any(v.pending(self.stream) for v in viewers if not v.closing):
                break
            if progress:
                quiet_since = time.monotonic()
            self._wait_writable(viewers)
        # Whoever has not taken its backlog by now loses it (counted): its exit frame goes next.
        for viewer in viewers:
            if viewer.fileno not in finished and not viewer.closing:
                while viewer.position < self.stream.end:
                    viewer.missed(self.stream.at(viewer.position))
                    viewer.position += 1
        deadline = time.monotonic() + EXIT_LAST
        while time.monotonic() < deadline:
            self._flush_exiting(viewers, finished, exit_message)
            if not any(v.pending(self.stream) for v in viewers if not v.closing):
                break
            self._wait_writable(viewers)
        for viewer in viewers:
            if viewer.closing:
                continue
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

    def _flush_exiting(self, viewers: list[ViewerConnection], finished: set[int], exit_message: dict) -> int:
        progress = 0
        for viewer in viewers:
            if viewer.closing:
                continue
            if viewer.fileno not in finished and viewer.position >= self.stream.end:
                finished.add(viewer.fileno)  # its backlog is out: its exit frame, with its exact drops
                exit_message["stats"]["dropped_viewer"] = viewer.dropped
                try:
                    viewer.send_first(protocol.encode(exit_message))
                except protocol.ProtocolError:
                    self.recorder.count_internal_error()
            if viewer.pending(self.stream):
                viewer.blocked = False
                progress += self._write(viewer)
        return progress

    def _wait_writable(self, viewers: list[ViewerConnection]) -> None:
        waiting = [v.sock for v in viewers if not v.closing and v.pending(self.stream)]
        if not waiting:
            return
        try:
            select.select([], waiting, [], 0.01)
        except (OSError, ValueError):
            time.sleep(0.01)

    def _close_all(self) -> None:
        for viewer in list(self.viewers.values()):
            self._drop(viewer)
        for sock in (self._listener, getattr(self, "_wake_r", None), getattr(self, "_wake_w", None)):
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


def _open_file_limit() -> int:
    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        return 1 << 30
    return soft if soft != resource.RLIM_INFINITY else 1 << 30


def _grow_send_buffer(sock: socket.socket) -> None:
    """As large a send buffer as the system allows a user (it only ever grows)."""
    try:
        before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 24)
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < before:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, before)
    except OSError:
        pass


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
