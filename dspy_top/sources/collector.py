"""The `Collector`: one daemon thread that runs every source and folds what they report into a `Fleet`.

It selects over whatever its sources give it (sockets, pipes, wake-up times), checks every
message (dspy_top/schema/) outside the fleet's lock, folds it through `Fleet` methods,
routes payload and stop requests to the source of each process, and never dies: a fault of
its own is counted and said, and it carries on. The UI never waits on it: it takes
`fleet.snapshot()` on its own timer. No Textual here: batch mode, `dspy-top run` and the
viewer all use it, whatever their sources are (base.py).
"""

from __future__ import annotations

import queue
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from dspy_top import schema
from dspy_top.model import Fleet
from dspy_top.model.payloads import PayloadAnswer
from dspy_top.model.states import CONNECTING_STATUS
from dspy_top.protocol import GET_PAYLOAD, STOP, Hello
from dspy_top.schema.records import CallsRecord, PayloadRecord, Record
from dspy_top.schema.values import BadMessage
from dspy_top.sources.base import CannotRequest, Readable, Sink, Source
from dspy_top.sources.recorded_payloads import RecordedPayloads

PAYLOAD_TIMEOUT = 5.0
LONGEST_WAIT = 0.25  # seconds a turn waits at most: requests expire, sources' clocks move
# Events folded per hold of the fleet's lock (a `calls` batch counts as its rows): the
# screen must not wait long for the lock while a busy process streams.
FOLD_CHUNK = 1000


class Collector:
    """Runs `sources` in one thread; folds into `fleet` under `fleet.lock`."""

    def __init__(
        self,
        fleet: Fleet,
        sources: Sequence[Source],
        *,
        on_payload: Callable[[PayloadAnswer], None] | None = None,
        payload_timeout: float = PAYLOAD_TIMEOUT,
    ) -> None:
        self.fleet = fleet
        self.sources = list(sources)
        self.on_payload = on_payload
        self.on_notice: Callable[[str], None] | None = None  # something the user should hear about
        self.payload_timeout = payload_timeout
        self.faults = 0  # errors of the viewer's own that the thread survived
        self._owners: dict[str, Source] = {}  # process key -> the source that reported it
        self._requests: queue.SimpleQueue[tuple[str, str, Any]] = queue.SimpleQueue()
        self._pending: dict[tuple[str, int], tuple[int, float]] = {}  # (key, req) -> (call id, deadline)
        # A payload the process can no longer give (it ended, or moved on) is read from its recording.
        self.recorded = RecordedPayloads()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> Collector:
        self._thread = threading.Thread(target=self._run, name="dspy-top-collector", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(2.0)
        for source in self.sources:
            try:
                source.close()
            except Exception:
                pass  # closing is best effort: the viewer is leaving
        self.recorded.close()
        for sock in (self._wake_r, self._wake_w):
            try:
                sock.close()
            except OSError:
                pass

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def where(self) -> str:
        """What the sources watch (a directory, a file, a host), for the screen with nothing attached."""
        return ", ".join(source.where for source in self.sources)

    def settled(self) -> bool:
        """True once every source has looked, and every process it found is attached (with its
        snapshot) or given up on."""
        if not self._started or not all(source.settled() for source in self.sources):
            return False
        with self.fleet.lock:
            return self.fleet.settled()

    def wait_settled(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.settled():
                return True
            time.sleep(0.01)
        return self.settled()

    def wake(self) -> None:
        """Make the thread take a turn now (from any thread)."""
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    # --- requests from the UI thread ---------------------------------------------------

    def request_payload(self, process: str, call_id: int) -> None:
        """Ask a process for a call's payload; the answer goes to `on_payload`."""
        self._requests.put((GET_PAYLOAD, process, call_id))
        self.wake()

    def request_stop(self, process: str, reason: str) -> None:
        """Ask a process to stop (its next LM call ends the run); a failure goes to `on_notice`."""
        self._requests.put((STOP, process, reason))
        self.wake()

    def dismiss(self, process: str) -> bool:
        """Forget an ended or broken process (its source may attach a process still there again)."""
        with self.fleet.lock:
            dropped = self.fleet.dismiss(process)
        if dropped:
            self._requests.put(("forget", process, None))
            self.wake()
        return dropped

    # --- the thread ----------------------------------------------------------------------

    def _run(self) -> None:
        for source in self.sources:
            source.start(_Route(self, source))
        self._started = True
        while not self._stop.is_set():
            try:
                self._turn()
            except Exception as exc:  # a fault of the viewer's own: say so, and keep watching
                self._fault(exc)

    def _fault(self, exc: Exception) -> None:
        self.faults += 1
        self._notice(f"dspy-top's collector hit an error and carries on: {type(exc).__name__}: {exc}")
        self._stop.wait(0.1)  # a fault that repeats must not spin

    def _turn(self) -> None:
        readers: list[Readable] = [self._wake_r]
        mine: list[Sequence[Readable]] = []
        wake_at = time.monotonic() + LONGEST_WAIT
        for source in self.sources:
            theirs = source.readers()
            mine.append(theirs)
            readers.extend(theirs)
            due = source.wake_at()
            if due is not None and due < wake_at:
                wake_at = due
        try:
            ready, _, _ = select.select(readers, [], [], max(0.0, wake_at - time.monotonic()))
        except (OSError, ValueError):
            ready = []  # a reader closed meanwhile: its source finds out on its turn
        if self._wake_r in ready:
            self._drain_wake()
        readable = set(ready)
        for source, theirs in zip(self.sources, mine):
            try:
                source.turn([r for r in theirs if r in readable] if readable else (), time.monotonic())
            except Exception as exc:  # one source's fault stops neither the others nor the requests
                self._fault(exc)
        self._take_requests()
        self._expire_requests(time.monotonic())

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _take_requests(self) -> None:
        while True:
            try:
                kind, key, value = self._requests.get_nowait()
            except queue.Empty:
                return
            if kind == GET_PAYLOAD:
                self._ask_payload(key, value)
            elif kind == STOP:
                self._ask_stop(key, value)
            elif kind == "forget":
                source = self._owners.pop(key, None)
                if source is not None:
                    source.forget(key)

    # --- what sources say (through their `_Route`) --------------------------------------

    def _attach(self, source: Source, key: str, pid: int | None, status: str) -> None:
        self._owners[key] = source
        with self.fleet.lock:
            self.fleet.attach(key, pid, status, host=source.host, stats_follow=source.stats_follow_calls)

    def _connected(self, source: Source, key: str, hello: Hello) -> None:
        self._owners[key] = source
        if source.host is None:  # a process on another machine records there, not here
            self.recorded.saw_hello(key, hello.pid, hello.started_at, hello.recording)
        with self.fleet.lock:
            self.fleet.connected(key, hello, host=source.host, stats_follow=source.stats_follow_calls)

    def _host(self, name: str, state: str, status: str, retry_at: float | None) -> None:
        with self.fleet.lock:
            self.fleet.host(name, state, status, retry_at)

    def _messages(self, key: str, messages: list[dict[str, Any]]) -> bool:
        # Checked here, outside the fleet's lock: the fold under it only adds up typed values.
        records, refused = _check(messages)
        folded = []
        for record in records:
            if type(record) is PayloadRecord:
                self._answer_payload(key, record)
            else:
                if type(record) is schema.ExitRecord and record.recording:
                    self.recorded.saw_exit(key, record.recording)
                folded.append(record)
        for chunk in _chunks(folded, FOLD_CHUNK):
            with self.fleet.lock:
                self.fleet.fold_many(key, chunk)
            time.sleep(0)  # let a refresh waiting for the lock take it now
        if refused is not None:
            self._closed(key, refused, refused=True)
            return False
        return True

    def _restart(self, source: Source, key: str, hello: Hello | None, first: list[dict[str, Any]]) -> bool:
        self._owners[key] = source
        records, refused = _check(first)
        with self.fleet.lock:  # one hold: a refresh sees the old state or the new one, never neither
            self.fleet.restart(key, hello, stats_follow=source.stats_follow_calls)
            if hello is not None:
                self.fleet.fold_many(key, [r for r in records if type(r) is not PayloadRecord])
        if refused is not None:
            self._closed(key, refused, refused=True)
            return False
        return True

    def _closed(self, key: str, reason: str, refused: bool = False) -> None:
        with self.fleet.lock:
            if refused:
                self.fleet.refused(key, reason)
            else:
                self.fleet.failed(key, reason)
        for pending_key in [k for k in self._pending if k[0] == key]:
            call_id, _ = self._pending.pop(pending_key)
            self._from_recording(key, call_id, f"the process connection closed ({reason})")

    def _let_go(self, key: str) -> bool:
        with self.fleet.lock:
            gone = self.fleet.let_go(key)
        if gone:
            self._owners.pop(key, None)
        return gone

    # --- payloads and stops ------------------------------------------------------------------

    def _ask_payload(self, key: str, call_id: int) -> None:
        source = self._owners.get(key)
        try:
            if source is None:
                raise CannotRequest("the process has ended: its payloads are gone")
            request = source.request_payload(key, call_id)
        except CannotRequest as exc:
            self._from_recording(key, call_id, str(exc))
            return
        self._pending[(key, request)] = (call_id, time.monotonic() + self.payload_timeout)

    def _ask_stop(self, key: str, reason: str) -> None:
        source = self._owners.get(key)
        try:
            if source is None:
                raise CannotRequest("not connected (has it ended?)")
            source.request_stop(key, reason)
        except CannotRequest as exc:
            self._notice(f"cannot ask the process to stop: {exc}")

    def _answer_payload(self, key: str, record: PayloadRecord) -> None:
        pending = self._pending.pop((key, record.req), None)
        if pending is None:
            return
        call_id, _ = pending
        if record.found and record.payload is not None:
            self._deliver(PayloadAnswer(key, call_id, dict(record.payload)))
        else:
            reason = record.reason or "the process no longer holds this call (only its most recent ones are kept)"
            self._from_recording(key, call_id, reason)

    def _from_recording(self, key: str, call_id: int, reason: str) -> None:
        """The payload the process cannot give, from its recording; else why there is none."""
        try:
            payload, why = self.recorded.payload(key, call_id)
        except Exception as exc:  # the viewer's own fault: said, never the collector's end
            self.faults += 1
            payload, why = None, f"its recording cannot be read ({type(exc).__name__})"
        if payload is not None:
            self._deliver(PayloadAnswer(key, call_id, payload))
        else:
            self._deliver(PayloadAnswer(key, call_id, None, f"{reason}; {why}" if why else reason))

    def _expire_requests(self, now: float) -> None:
        for pending_key, (call_id, deadline) in list(self._pending.items()):
            if now > deadline:
                del self._pending[pending_key]
                self._deliver(
                    PayloadAnswer(
                        pending_key[0], call_id, None, f"no answer from the process within {self.payload_timeout:g}s"
                    )
                )

    def _deliver(self, answer: PayloadAnswer) -> None:
        if self.on_payload is not None:
            try:
                self.on_payload(answer)
            except Exception:
                pass  # the app is gone (shutting down); nobody is waiting

    def _notice(self, text: str) -> None:
        if self.on_notice is not None:
            try:
                self.on_notice(text)
            except Exception:
                pass  # the app is gone


class _Route(Sink):
    """One source's `Sink`: what it says goes to the collector, which notes whose process it is."""

    def __init__(self, collector: Collector, source: Source) -> None:
        self._collector = collector
        self._source = source
        self.messages = collector._messages  # the hot path: no extra call per batch
        self.closed = collector._closed
        self.let_go = collector._let_go
        self.wake = collector.wake

    def attach(self, key: str, pid: int | None = None, status: str = CONNECTING_STATUS) -> None:
        self._collector._attach(self._source, key, pid, status)

    def connected(self, key: str, hello: Hello) -> None:
        self._collector._connected(self._source, key, hello)

    def restart(self, key: str, hello: Hello | None, first: list[dict[str, Any]]) -> bool:
        return self._collector._restart(self._source, key, hello, first)

    def host(self, name: str, state: str, status: str, retry_at: float | None = None) -> None:
        self._collector._host(name, state, status, retry_at)


def _check(messages: list[dict[str, Any]]) -> tuple[list[Record], str | None]:
    """The checked records of the messages before the first one the schema refuses, and why it was refused."""
    records = []
    for message in messages:
        try:
            record = schema.parse(message)
        except BadMessage as exc:
            return records, f"malformed {message.get('t')!r} message: {exc}"
        if record is not None:
            records.append(record)
    return records, None


def _chunks(records: list[Record], events: int) -> Iterator[list[Record]]:
    """Consecutive runs of records holding about `events` events each (a batch counts its calls)."""
    chunk: list[Record] = []
    size = 0
    for record in records:
        chunk.append(record)
        size += len(record.rows) if type(record) is CallsRecord else 1
        if size >= events:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk
