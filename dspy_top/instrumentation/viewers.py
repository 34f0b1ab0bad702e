"""One attached viewer on the server side: its socket, its place in the stream, what only it gets.

What only this viewer gets (its hello and snapshot, payload replies, rare events it fell
too far behind to read from the stream, its final stats and exit) goes before the stream.
Writes never block: whatever the socket takes now is sent, the rest waits for it to be
writable again, and a viewer whose socket is full is not even tried until then.
"""

from __future__ import annotations

import socket
from collections import deque

from dspy_top import protocol
from dspy_top.instrumentation.stream import CALLS, KEPT, STATS, Frame, FrameStream

MAX_REQUEST = 64 * 1024
# Frames handed to one send() call: enough to fill a socket buffer in one system call.
BATCH_FRAMES = 64
BATCH_BYTES = 1 << 20


class ViewerConnection:
    """One connected viewer."""

    def __init__(self, sock: socket.socket, position: int, private_limit: int) -> None:
        self.sock = sock
        self.fileno = sock.fileno()
        self.position = position  # the next stream frame it takes
        self.private: deque[bytes] = deque()  # frames for this viewer only, sent before the stream
        self.private_size = 0
        self.private_limit = private_limit
        self.inflight: memoryview | None = None  # the unsent rest of a frame begun
        self.reader = protocol.FrameReader(max_frame=MAX_REQUEST)
        self.dropped = 0  # call events it lost by falling behind (its `dropped_viewer`)
        self.closing = False
        self.blocked = False  # its socket was full: wait until it is writable
        self.interest = 0  # the selector events it is registered for

    # --- what it gets -------------------------------------------------------------------

    def send_first(self, frame: bytes) -> None:
        """A frame for this viewer only, ahead of the stream (hello, snapshot, payload, exit)."""
        self.private.append(frame)
        self.private_size += len(frame)
        if self.private_size > self.private_limit:
            self.closing = True  # stopped reading long ago: let it go rather than hold memory

    def missed(self, frame: Frame) -> None:
        """A stream frame it had not taken was dropped from the stream."""
        if frame.kind == CALLS:
            self.dropped += frame.events
        elif frame.kind == KEPT:
            self.send_first(frame.data)
        # a stats frame: a newer one follows

    def pending(self, stream: FrameStream) -> bool:
        return bool(self.inflight is not None or self.private or self.position < stream.end)

    # --- writing --------------------------------------------------------------------------

    def write(self, stream: FrameStream) -> int:
        """Send what the socket takes now; the number of bytes sent. Raises OSError if the socket broke."""
        chunks: list[memoryview | bytes] = []
        taken_private = 0
        size = 0
        if self.inflight is not None:
            chunks.append(self.inflight)
            size += len(self.inflight)
        for frame in self.private:
            if len(chunks) >= BATCH_FRAMES or size >= BATCH_BYTES:
                break
            chunks.append(frame)
            size += len(frame)
            taken_private += 1
        position = self.position
        end = stream.end
        positions: list[int] = []  # the stream position after each stream chunk
        while position < end and len(chunks) < BATCH_FRAMES and size < BATCH_BYTES:
            frame = stream.at(position)
            position += 1
            data = frame.data
            if not data:  # a batch that could not be encoded: lost for every viewer
                if chunks:
                    break  # counted once this viewer's position passes it: next time
                self.dropped += frame.events
                self.position = position
                continue
            if frame.kind == STATS:
                if position - 1 < stream.newest_stats:
                    if not chunks:
                        self.position = position
                    continue  # a newer one is on its way
                try:
                    data = protocol.encode_with(data, {"dropped_viewer": self.dropped})
                except protocol.ProtocolError:  # a few bytes over the frame limit: the next one
                    if not chunks:
                        self.position = position
                    continue
            chunks.append(data)
            positions.append(position)
            size += len(data)
        if not chunks:
            self.position = position
            return 0
        try:
            sent = self.sock.send(chunks[0]) if len(chunks) == 1 else self.sock.sendmsg(chunks)
        except (BlockingIOError, InterruptedError):
            self.blocked = True
            return 0
        self._advance(sent, chunks, taken_private, positions)
        return sent

    def _advance(self, sent: int, chunks: list, taken_private: int, positions: list[int]) -> None:
        """Take what `sent` bytes covered off the front; the rest of a frame cut short stays in flight."""
        index = 0
        if self.inflight is not None:
            chunk_size = len(self.inflight)
            if sent < chunk_size:
                self.inflight = self.inflight[sent:]
                self.blocked = True
                return
            sent -= chunk_size
            self.inflight = None
            index = 1
        for _ in range(taken_private):
            frame = chunks[index]
            index += 1
            self.private.popleft()
            self.private_size -= len(frame)
            if sent < len(frame):
                self.inflight = memoryview(frame)[sent:]
                self.blocked = True
                return
            sent -= len(frame)
        for position in positions:
            frame = chunks[index]
            index += 1
            self.position = position
            if sent < len(frame):
                if sent == 0:
                    self.position = position - 1  # not begun: taken again next time (stats re-made then)
                else:
                    self.inflight = memoryview(frame)[sent:]
                self.blocked = True
                return
            sent -= len(frame)

    def close(self) -> None:
        self.closing = True
        try:
            self.sock.close()
        except OSError:
            pass
