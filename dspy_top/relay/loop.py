"""The relay's loop: a source's `Sink` calls written out as relay frames, the viewer's requests read in.

One thread, as the collector's: it selects over stdin, the source's readers and a wake-up
pipe, lets the source take its turn, and writes what the turn said in one go. Writes block:
a viewer (or a network) slower than the jobs makes the relay read its sockets later, and
each job then drops call events for it and counts them (`dropped_viewer`), as it would for
a slow local viewer; the counters stay exact. Nothing is checked or folded here: the viewer
does that, as it would for a local process. A payload the process can no longer give (it
ended, or moved on) is read here from its recording: the file is on this machine, not the viewer's.
"""

from __future__ import annotations

import os
import select
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from dspy_top import protocol
from dspy_top.model.states import CONNECTING_STATUS
from dspy_top.protocol import FrameReader, Hello, ProtocolError
from dspy_top.sources import relay_wire as wire
from dspy_top.sources.base import CannotRequest, Sink, Source
from dspy_top.sources.recorded_payloads import RecordedPayloads

LONGEST_WAIT = 0.25  # seconds a pass waits at most, as the collector's
PENDING_PAYLOADS = 1000  # payload requests remembered for their answer; older ones are forgotten


class StreamSink(Sink):
    """Every sink call as a relay frame, added to `out` (the loop writes it after the turn)."""

    def __init__(self, out: bytearray, wake: Callable[[], None]) -> None:
        self.out = out
        self._wake = wake
        # (key, the process's request id) -> the viewer's request id, until the answer passes.
        self._payloads: OrderedDict[tuple[str, int], int] = OrderedDict()
        self.recorded = RecordedPayloads()  # the processes' recordings, which this machine holds

    def attach(self, key: str, pid: int | None = None, status: str = CONNECTING_STATUS) -> None:
        self.frame({"t": wire.ATTACH, "k": key, "pid": pid, "status": status})

    def connected(self, key: str, hello: Hello) -> None:
        self.recorded.saw_hello(key, hello.pid, hello.started_at, hello.recording)
        self.frame({"t": wire.CONNECTED, "k": key, "hello": wire.hello_message(hello)})

    def messages(self, key: str, messages: list[dict[str, Any]]) -> bool:
        for message in messages:
            kind = message.get("t")
            if kind == protocol.PAYLOAD:
                message = self._answer(key, message)
            elif kind == protocol.EXIT and isinstance(message.get("recording"), str):
                self.recorded.saw_exit(key, message["recording"])
            self.frame({"t": wire.MESSAGE, "k": key, "message": message})
        return True  # the viewer checks them; it ignores a process it refused

    def closed(self, key: str, reason: str, refused: bool = False) -> None:
        for pending in [p for p in self._payloads if p[0] == key]:
            del self._payloads[pending]
        self.frame({"t": wire.CLOSED, "k": key, "reason": reason, "refused": refused})

    def let_go(self, key: str) -> bool:
        self.frame({"t": wire.LET_GO, "k": key})
        return True

    def wake(self) -> None:
        self._wake()

    def frame(self, frame: dict[str, Any]) -> None:
        try:
            self.out += wire.encode(frame)
        except ProtocolError as exc:  # cannot happen for a process's frame (8 MiB at most); said, not raised
            print(f"dspy-top relay: dropped a {frame.get('t')} frame: {exc}", file=sys.stderr, flush=True)

    # --- payloads: the viewer's request ids, not the process's ---------------------------

    def asked(self, key: str, process_req: int, viewer_req: int) -> None:
        self._payloads[(key, process_req)] = viewer_req
        while len(self._payloads) > PENDING_PAYLOADS:
            self._payloads.popitem(last=False)

    def _answer(self, key: str, message: dict[str, Any]) -> dict[str, Any]:
        viewer_req = self._payloads.pop((key, message.get("req")), None)  # type: ignore[arg-type]
        if viewer_req is None:
            return message
        if message.get("found") is not True and type(message.get("id")) is int:
            reason = message.get("reason")
            reason = reason if isinstance(reason, str) else "the process no longer holds this call"
            return self.from_recording(key, viewer_req, message["id"], reason)
        return {**message, "req": viewer_req}

    def from_recording(self, key: str, viewer_req: int, call_id: int, reason: str) -> dict[str, Any]:
        """The process's payload answer for a call it cannot give: from its recording, else why not."""
        try:
            payload, why = self.recorded.payload(key, call_id)
        except Exception as exc:  # the relay's own fault: said in the answer, never the relay's end
            payload, why = None, f"its recording cannot be read ({type(exc).__name__})"
        answer: dict[str, Any] = {"t": protocol.PAYLOAD, "req": viewer_req, "id": call_id}
        if payload is not None:
            return {**answer, "found": True, "payload": payload}
        return {**answer, "found": False, "reason": f"{reason}; {why}" if why else reason}

    def close(self) -> None:
        self.recorded.close()


class Relay:
    """Runs `source` and relays it: the hello, the version the viewer chose, then every sink call."""

    def __init__(
        self, source: Source, hello: dict[str, Any], *, stdin: int = 0, stdout: int = 1, hello_timeout: float = 30.0
    ) -> None:
        self.source = source
        self.hello = hello
        self.stdin = stdin
        self.stdout = stdout
        self.hello_timeout = hello_timeout
        self.out = bytearray()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.sink = StreamSink(self.out, self._wake)
        self._requests = FrameReader(wire.MAX_REQUEST)
        self._settled_said = False
        self.faults = 0

    def run(self) -> int:
        """Relay until stdin closes (0), or the viewer speaks no version of ours or sends garbage (2)."""
        try:
            self._write(wire.encode(self.hello))
            refusal = self._negotiate()
            if refusal is not None:
                self._write(wire.encode({"t": wire.ERROR, "reason": refusal}))
                print(f"dspy-top relay: {refusal}", file=sys.stderr, flush=True)
                return 2
            self.source.start(self.sink)
            return self._relay()
        except (BrokenPipeError, ConnectionResetError):
            return 0  # the viewer (or ssh) went away: nothing left to tell
        finally:
            try:
                self.source.close()
                self.sink.close()
            finally:
                os.close(self._wake_r)
                os.close(self._wake_w)

    def _negotiate(self) -> str | None:
        """Wait for the viewer's hello; why it is refused, or None."""
        deadline = time.monotonic() + self.hello_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return f"no hello from the viewer within {self.hello_timeout:g}s"
            ready, _, _ = select.select([self.stdin], [], [], remaining)
            if not ready:
                continue
            data = os.read(self.stdin, 65536)
            if not data:
                raise BrokenPipeError  # the viewer left before saying hello
            try:
                frames = self._requests.feed(data)
            except ProtocolError as exc:
                return f"bad input from the viewer: {exc}"
            if not frames:
                continue
            first, rest = frames[0], frames[1:]
            if first.get("t") != wire.HELLO:
                return f"expected the viewer's hello, got {first.get('t')!r}"
            version = first.get("v")
            if type(version) is not int or version not in wire.RELAY_VERSIONS:
                return self._refuse(version, first.get("client"))
            for request in rest:
                self._request(request)  # nothing to ask for yet: the source has not started
            self._take_requests(b"")  # garbage that came with the hello is refused now, not at the next read
            return None

    def _refuse(self, version: Any, client: Any) -> str:
        ours = self.hello.get("dspy_top")
        viewer = client if isinstance(client, str) else "the viewer's dspy-top"
        newer = type(version) is int and version > wire.RELAY_VERSION
        return (
            f"dspy-top {ours} on {self.hello.get('host')} speaks relay protocol "
            f"{', '.join(map(str, wire.RELAY_VERSIONS))}; {viewer} asked for {version!r}: "
            + (
                "upgrade dspy-top on this host (pip install -U dspy-top)"
                if newer
                else "upgrade the viewer's dspy-top (pip install -U dspy-top)"
            )
        )

    def _relay(self) -> int:
        while True:
            readers = [self.stdin, self._wake_r]
            theirs = list(self.source.readers())
            readers.extend(theirs)
            now = time.monotonic()
            due = self.source.wake_at()
            timeout = LONGEST_WAIT if due is None else min(LONGEST_WAIT, max(0.0, due - now))
            try:
                ready, _, _ = select.select(readers, [], [], timeout)
            except (OSError, ValueError):
                ready = []  # a reader closed meanwhile: the source finds out on its turn
            if self.stdin in ready and not self._read_requests():
                return 0  # stdin closed: the viewer is gone
            if self._wake_r in ready:
                self._drain_wake()
            readable = set(ready)
            try:
                self.source.turn([r for r in theirs if r in readable], time.monotonic())
            except Exception as exc:  # one fault of ours must not end the relay: say it, carry on
                self._fault(exc)
            if not self._settled_said and self.source.settled():
                self._settled_said = True
                self.sink.frame({"t": wire.SETTLED})
            self._flush()

    def _read_requests(self) -> bool:
        data = os.read(self.stdin, 65536)
        if not data:
            return False
        self._take_requests(data)
        return True

    def _take_requests(self, data: bytes) -> None:
        try:
            requests = self._requests.feed(data)
        except ProtocolError as exc:
            self.sink.frame({"t": wire.ERROR, "reason": f"bad input from the viewer: {exc}"})
            self._flush()
            raise BrokenPipeError from None  # ends the relay: its input can no longer be trusted
        for request in requests:
            try:
                self._request(request)
            except Exception as exc:
                self._fault(exc)

    def _request(self, request: dict[str, Any]) -> None:
        kind, key = request.get("t"), request.get("k")
        if not isinstance(key, str):
            return  # unknown or malformed requests are skipped, as the protocol skips unknown types
        if kind == wire.GET_PAYLOAD:
            viewer_req, call_id = request.get("req"), request.get("id")
            if type(viewer_req) is not int or type(call_id) is not int:
                return
            try:
                process_req = self.source.request_payload(key, call_id)
            except CannotRequest as exc:
                answer = self.sink.from_recording(key, viewer_req, call_id, str(exc))
                self.sink.frame({"t": wire.MESSAGE, "k": key, "message": answer})
                return
            self.sink.asked(key, process_req, viewer_req)
        elif kind == wire.STOP:
            reason = request.get("reason")
            try:
                self.source.request_stop(key, reason if isinstance(reason, str) else "stop requested over the relay")
            except CannotRequest as exc:
                print(f"dspy-top relay: cannot stop {key}: {exc}", file=sys.stderr, flush=True)
        elif kind == wire.FORGET:
            self.source.forget(key)

    def _fault(self, exc: Exception) -> None:
        self.faults += 1
        print(
            f"dspy-top relay: an error of its own, carrying on: {type(exc).__name__}: {exc}",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(0.1)  # a fault that repeats must not spin

    def _flush(self) -> None:
        if self.out:
            self._write(bytes(self.out))
            self.out.clear()

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.stdout, view)
            view = view[written:]

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # full (a wake-up is pending anyway) or closed (the relay is ending)

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except OSError:
            pass
