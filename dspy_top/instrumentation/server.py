"""Serves a process's recorder on its Unix socket, from one daemon thread, never blocking the job.

Each tick the thread drains the recorder's events and hands them to the publisher
(publisher.py: redacted once, handed to the taps, encoded once into the stream), and each
viewer reads the stream from its own position (viewers.py). Any number of viewers may
connect (listener.py), up to a cap; each gets a hello and a snapshot, then the stream. A
viewer that reads too slowly loses call events (counted and reported to it), never the exact
counters, and slows neither the job nor the other viewers. What viewers send is answered by
viewer_requests.py (payloads, stop); at exit they get their last frames
(exit_flush.py). Nothing a viewer sends, no message the job produces and no shortage of file
descriptors ends this thread.

Another consumer of the same events (a recording written to a file) adds taps to `self.taps`
(see publisher.py): `join()` starts one on this thread, from a snapshot taken at the same
instant as the events before it; `self.tickers` run on every tick after the messages (a
recording writes its file there). While there is a tap, a `stats` message covers exactly the
call events before it in the stream (drained with it under one lock), so a consumer can add
the call events after it to its counters.
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dspy_top import paths, protocol
from dspy_top.config import JobSettings
from dspy_top.instrumentation.exit_flush import EXIT_FLUSH, EXIT_LAST, ExitFlush
from dspy_top.instrumentation.listener import Listener, quiet_close, refusal, same_user
from dspy_top.instrumentation.publisher import EVENT_TEXT, Publisher
from dspy_top.instrumentation.recorder import Recorder
from dspy_top.instrumentation.stream import STATS, FrameStream
from dspy_top.instrumentation.viewer_requests import ViewerRequests
from dspy_top.instrumentation.viewers import ViewerConnection

# How often queued events are drained and sent. Each tick the thread takes the GIL from the
# job's threads; under Evaluate(num_threads=8) on 2 cores, ticking every 50 ms cost the
# job about twice what every 250 ms does (benchmarks/README.md). New viewers, payload
# requests and stop are served at once, not on a tick.
TICK = 0.25
STATS_EVERY = 0.5  # how often counters go out while something changes
HEARTBEAT_EVERY = 2.0  # how often they go out when nothing does


@dataclass
class CatchUp:
    """What a new viewer gets before the stream: built once, reused until the next stats tick."""

    hello: bytes
    snapshot: bytes
    position: int  # the stream position it covers up to
    built_at: float


class SocketServer:
    """The listening socket and the thread that feeds every viewer."""

    def __init__(
        self,
        recorder: Recorder,
        hello: Callable[[], dict[str, Any]],
        materialize: Callable[[Any], dict[str, Any]],
        on_stop: Callable[[str], None] | None = None,
        settings: JobSettings | None = None,
        secrets_of: Callable[[Any], list[str]] | None = None,
    ) -> None:
        settings = settings or JobSettings()
        self.recorder = recorder
        self.hello = hello
        self.max_viewers = settings.max_viewers
        # What a viewer may lag behind before it loses call events (the stream's limit); what it
        # may have waiting for it alone (payloads, rare events) before it is let go.
        self.publisher = Publisher(recorder, settings.viewer_buffer, self._streaming)
        self.private_limit = max(16 * settings.viewer_buffer, 64 * 1024 * 1024)
        self.requests = ViewerRequests(recorder, self.publisher, materialize, secrets_of, on_stop, self._drop)
        # Called with each redacted message as it goes into the stream (publisher.py),
        # and on each tick after them (`force`: write now, the process may be ended at once).
        self.taps = self.publisher.taps
        self.tickers: list[Callable[[bool], None]] = []
        self._joining: list[Callable[[dict[str, Any], dict[str, Any]], None]] = []
        self.path = paths.socket_path()
        self.viewers: dict[int, ViewerConnection] = {}
        self._catch_up: CatchUp | None = None
        self._selector: selectors.BaseSelector | None = None
        self._listener: Listener | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._pushes: list[threading.Event] = []
        self._final: dict[str, Any] | None = None
        self._last_stats_version = -1
        self._last_stats_at = 0.0
        self.ever_attached = False

    @property
    def stream(self) -> FrameStream:
        """The encoded stream every viewer reads (the publisher's)."""
        return self.publisher.stream

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        directory = paths.ensure_private_dir(self.path.parent)
        self.path = directory / self.path.name
        self._selector = selectors.DefaultSelector()
        self._listener = Listener(self.path, self._selector, self.recorder.count_internal_error)
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

    def payload_of(self, source: Any) -> dict[str, Any]:
        """A kept call's payload, redacted exactly as a viewer gets it in a `payload` reply."""
        return self.requests.payload_of(source)

    def packed_payloads(self, call_ids: list[int], take: Callable[[list[int], Callable], Any]) -> Any:
        """`[call id, payload_of(kept)]` packed for each call, from the ring's slots, where that is
        done in C: a payload_pack.PackedBatch, or None (see ViewerRequests.packed_payloads)."""
        return self.requests.packed_payloads(call_ids, take)

    def abandon_after_fork(self) -> None:
        """In a forked child: close the parent's descriptors without touching its socket file."""
        for viewer in list(self.viewers.values()):
            viewer.close()
        self.viewers.clear()
        self._close_sockets()
        if self._selector is not None:
            try:
                self._selector.close()
            except Exception:
                pass
        self._selector = None
        self._thread = None
        self.publisher.stream = FrameStream(self.stream.limit)
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
                    with self.recorder.handoff.released(TICK):
                        self._stopping.wait(TICK)
            try:
                self._finish()
            except Exception:
                self.recorder.count_internal_error()
        finally:
            self.recorder.handoff.idle()
            self._close_all()
            self._stopped.set()

    def _serve_once(self, timeout: float) -> None:
        self._listener.resume_if_due()
        handoff = self.recorder.handoff  # every call letting the GIL go says so (gil_handoff.py)
        with handoff.released(timeout):
            ready = self._selector.select(timeout)
        for key, mask in ready:
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
                    with handoff.released():
                        self.requests.read(viewer)
                if mask & selectors.EVENT_WRITE:
                    viewer.blocked = False
        pushes, self._pushes = self._pushes, []  # those asked for before this tick's stats
        if self._joining:
            self._start_joining()
        self._publish_events()
        handoff.back()
        self._publish_stats(force=bool(pushes))
        self._trim()
        self._write_all()
        handoff.back()
        self._tick(force=bool(pushes))
        for done in pushes:
            done.set()

    def _start_joining(self) -> None:
        joining, self._joining = self._joining, []
        publisher = self.publisher
        publisher.redactor.refresh()
        events, snapshot = self.recorder.drain_and_snapshot()
        if events and (self._streaming() or self.taps):
            publisher.publish(events)  # to those already here: the snapshot covers them for the newcomers
        hello = publisher.redacted_hello(self.hello)
        message = publisher.snapshot_message(snapshot)
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

    def _accept(self) -> None:
        for sock in self._listener.accept():
            try:
                self._admit(sock)
            except Exception:
                self.recorder.count_internal_error()
                quiet_close(sock)

    def _admit(self, sock: socket.socket) -> None:
        if not same_user(sock):
            quiet_close(sock)
            return
        sock.setblocking(False)
        reason = refusal(sock, len(self.viewers), self.max_viewers)
        if reason is not None:
            try:
                sock.send(protocol.encode({"t": protocol.ERROR, "reason": reason}))
            except OSError:
                pass
            quiet_close(sock)
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
        publisher = self.publisher
        publisher.redactor.refresh()  # a key set in the job's environment since the last look
        events, snapshot = self.recorder.drain_and_snapshot()
        publisher.publish(events)  # before the snapshot's position: viewers already here get them
        hello = publisher.hello_frame(self.hello)
        cached = self._catch_up = CatchUp(hello, publisher.snapshot_frame(snapshot), self.stream.end, now)
        return cached

    # --- the stream ---------------------------------------------------------------------

    def _publish_events(self) -> None:
        events = self.recorder.drain()
        if events and (self._streaming() or self.taps):
            self.publisher.publish(events)  # else nobody to send them to: a viewer arriving later gets a snapshot

    def _streaming(self) -> bool:
        """Whether anyone reads the encoded stream: a viewer, or one about to (a cached catch-up)."""
        return bool(self.viewers) or self._catch_up is not None

    def _publish_stats(self, force: bool = False) -> None:
        now = time.monotonic()
        changed = self.recorder.version != self._last_stats_version
        due = now - self._last_stats_at >= (STATS_EVERY if changed else HEARTBEAT_EVERY)
        if not (force or due) or not (self.viewers or self.taps):
            return
        self._last_stats_version = self.recorder.version
        self._last_stats_at = now
        publisher = self.publisher
        publisher.redactor.refresh()  # a key set in the job's environment since
        if self.taps:
            # At one instant with the events before it, for a recording: the stats covers exactly
            # those, so it can add the calls after it to its totals (viewers need not, and their
            # events keep the pace of the tick).
            events, stats = self.recorder.drain_and_stats()
            if events:
                publisher.publish(events)
        else:
            stats = self.recorder.stats()
        frame = publisher.encode({"t": protocol.STATS, **stats}, "stats", tap=True)
        if frame is not None:
            self.stream.append(frame, STATS)

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
        stream = self.stream
        released = self.recorder.handoff.released()
        for _ in range(16):  # a bounded turn per viewer: the others are waiting
            try:
                with released:  # a send lets the GIL go (gil_handoff.py)
                    sent_now = viewer.write(stream)
            except OSError:
                self._drop(viewer)
                return sent
            sent += sent_now
            if viewer.blocked or not viewer.pending(stream) or not sent_now:
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
        """At exit: the final numbers and the exit message to the taps, then to every viewer
        (exit_flush.py)."""
        if self._joining:
            self._start_joining()  # a consumer asked for just before the exit still gets it
        publisher = self.publisher
        events, stats = self.recorder.drain_and_stats()
        if events and (self._streaming() or self.taps):
            publisher.publish(events)
        final = self._final or {}
        exit_message = publisher.redactor.value({"t": protocol.EXIT, **final, "stats": stats}, EVENT_TEXT)
        if self.taps:
            publisher.tap(dict(exit_message))
            self._tick(force=True)
        viewers = [v for v in self.viewers.values() if not v.closing]
        if not viewers:
            return
        stats_frame = publisher.encode({"t": protocol.STATS, **stats}, "stats")
        ExitFlush(viewers, self.stream, exit_message, self._write, self.recorder.count_internal_error).run(stats_frame)

    def _close_sockets(self) -> None:
        if self._listener is not None:
            self._listener.close()
        self._listener = None
        for sock in (getattr(self, "_wake_r", None), getattr(self, "_wake_w", None)):
            if sock is not None:
                quiet_close(sock)

    def _close_all(self) -> None:
        for viewer in list(self.viewers.values()):
            self._drop(viewer)
        self._close_sockets()
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
