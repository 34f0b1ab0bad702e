"""The job's last words to its viewers: final numbers, what time allows of each backlog, then the exit frame.

Bounded in time, so a job never waits on a viewer at exit: every viewer gets the final stats
first, then its backlog while it keeps reading (a quiet one holds things up for `EXIT_QUIET` at
most), then its exit frame carrying exactly what it lost, which reaches even a viewer that
stopped reading (its send buffer is grown for it). Runs on the server thread (server.py).
"""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable
from typing import Any

from dspy_top import protocol
from dspy_top.instrumentation.stream import FrameStream
from dspy_top.instrumentation.viewers import ViewerConnection

# How long viewers still reading their backlog get, how long a quiet one holds that up, and
# how long the exit frame itself then gets.
EXIT_FLUSH = 1.0
EXIT_QUIET = 0.1
EXIT_LAST = 0.2


class ExitFlush:
    """One exit, to the viewers still attached; `write(viewer)` is the server's bounded write turn."""

    def __init__(
        self,
        viewers: list[ViewerConnection],
        stream: FrameStream,
        exit_message: dict[str, Any],
        write: Callable[[ViewerConnection], int],
        count_error: Callable[[], None],
    ) -> None:
        self.viewers = viewers
        self.stream = stream
        self.exit_message = exit_message
        self.write = write
        self.count_error = count_error
        self.finished: set[int] = set()  # the viewers whose exit frame is queued

    def run(self, stats_frame: bytes | None) -> None:
        viewers, stream = self.viewers, self.stream
        for viewer in viewers:
            # Room for the last frames even in a socket its viewer stopped emptying.
            grow_send_buffer(viewer.sock)
            viewer.blocked = False
            if stats_frame is not None:
                try:
                    viewer.send_first(protocol.encode_with(stats_frame, {"dropped_viewer": viewer.dropped}))
                except protocol.ProtocolError:
                    pass
        deadline = time.monotonic() + EXIT_FLUSH
        quiet_since = time.monotonic()
        while time.monotonic() < deadline and time.monotonic() - quiet_since < EXIT_QUIET:
            progress = self._flush()
            if len(self.finished) == len(viewers) and not any(v.pending(stream) for v in viewers if not v.closing):
                break
            if progress:
                quiet_since = time.monotonic()
            self._wait_writable()
        # Whoever has not taken its backlog by now loses it (counted): its exit frame goes next.
        for viewer in viewers:
            if viewer.fileno not in self.finished and not viewer.closing:
                while viewer.position < stream.end:
                    viewer.missed(stream.at(viewer.position))
                    viewer.position += 1
        deadline = time.monotonic() + EXIT_LAST
        while time.monotonic() < deadline:
            self._flush()
            if not any(v.pending(stream) for v in viewers if not v.closing):
                break
            self._wait_writable()
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

    def _flush(self) -> int:
        progress = 0
        for viewer in self.viewers:
            if viewer.closing:
                continue
            if viewer.fileno not in self.finished and viewer.position >= self.stream.end:
                self.finished.add(viewer.fileno)  # its backlog is out: its exit frame, with its exact drops
                self.exit_message["stats"]["dropped_viewer"] = viewer.dropped
                try:
                    viewer.send_first(protocol.encode(self.exit_message))
                except protocol.ProtocolError:
                    self.count_error()
            if viewer.pending(self.stream):
                viewer.blocked = False
                progress += self.write(viewer)
        return progress

    def _wait_writable(self) -> None:
        waiting = [v.sock for v in self.viewers if not v.closing and v.pending(self.stream)]
        if not waiting:
            return
        try:
            select.select([], waiting, [], 0.01)
        except (OSError, ValueError):
            time.sleep(0.01)


def grow_send_buffer(sock: socket.socket) -> None:
    """As large a send buffer as the system allows a user (it only ever grows)."""
    try:
        before = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 24)
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) < before:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, before)
    except OSError:
        pass
