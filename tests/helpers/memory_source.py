"""An in-memory `Source` for tests: the test plays the processes, the real `Collector` folds them.

The smallest source there is (docs/sources.md walks through it): what the test says from its
own thread (`hello`, `send`, `end`) is queued and told to the sink on the collector's next
turn, as a real source hands over what its threads learned. Payloads are answered from a
dict, stops are recorded. No socket, no thread of its own, nothing to select on.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from dspy_top import schema
from dspy_top.sources.base import CannotRequest, Readable, Sink, Source
from tests.helpers.fake_server import hello as hello_message


class MemorySource(Source):
    """Processes a test makes up, named by the keys it gives them."""

    def __init__(
        self, where: str = "memory", payloads: dict[tuple[str, int], dict] | None = None, stops: str | None = None
    ) -> None:
        self._where = where
        self.payloads = dict(payloads or {})  # (key, call id) -> the payload a request gets
        self.cannot_stop = stops  # None: stops are recorded; else why this source cannot carry them
        self.stops: list[tuple[str, str]] = []  # (key, reason) of every stop asked
        self.asked: list[tuple[str, int]] = []  # (key, call id) of every payload asked
        self.forgotten: list[str] = []
        self.refused: set[str] = set()  # keys whose messages the collector refused
        self.ended: set[str] = set()
        self.closed = False
        self.silent = False  # True: payload requests are taken and never answered
        self._told: queue.SimpleQueue[Callable[[Sink], None]] = queue.SimpleQueue()
        self._untold = 0  # said by the test, not yet told to the sink (settled once none is left)
        self._count = threading.Lock()
        self._requests = 0

    @property
    def where(self) -> str:
        return self._where

    # --- what the test says, from its own thread -----------------------------------------

    def hello(self, key: str, pid: int, **extra: Any) -> None:
        """A process appears and says hello."""
        message = hello_message(pid, **extra)

        def tell(sink: Sink) -> None:
            self.ended.discard(key)
            self.refused.discard(key)
            sink.attach(key, pid)
            sink.connected(key, schema.hello(message))

        self._tell(tell)

    def send(self, key: str, *messages: dict[str, Any]) -> None:
        """Protocol messages from the process, in order."""
        self._tell(lambda sink: self._messages(sink, key, list(messages)))

    def end(self, key: str, reason: str = "connection closed") -> None:
        """The process's stream is over (after an `exit` it ended; without one it is lost)."""

        def tell(sink: Sink) -> None:
            self.ended.add(key)
            sink.closed(key, reason)

        self._tell(tell)

    def tell(self, action: Callable[[Sink], None]) -> None:
        """Anything else, said to the sink on the collector's thread (`let_go`, a wait status)."""
        self._tell(action)

    def _tell(self, action: Callable[[Sink], None]) -> None:
        with self._count:
            self._untold += 1
        self._told.put(action)
        sink = getattr(self, "sink", None)
        if sink is not None:
            sink.wake()

    def _messages(self, sink: Sink, key: str, messages: list[dict[str, Any]]) -> None:
        if key in self.refused or key in self.ended:
            return  # a real source stops reading a stream that is over
        if not sink.messages(key, messages):
            self.refused.add(key)

    # --- the Source, on the collector's thread --------------------------------------------

    def turn(self, ready: Sequence[Readable], now: float) -> None:
        while True:
            try:
                action = self._told.get_nowait()
            except queue.Empty:
                return
            try:
                action(self.sink)
            finally:
                with self._count:
                    self._untold -= 1

    def settled(self) -> bool:
        return self._untold == 0

    def request_payload(self, key: str, call_id: int) -> int:
        if key in self.ended or key in self.refused:
            raise CannotRequest("the process has ended: its payloads are gone")
        self._requests += 1
        request = self._requests
        self.asked.append((key, call_id))
        if not self.silent:
            payload = self.payloads.get((key, call_id))
            answer = {"t": "payload", "req": request, "id": call_id, "found": payload is not None}
            if payload is not None:
                answer["payload"] = payload
            self.send(key, answer)
        return request

    def request_stop(self, key: str, reason: str) -> None:
        if self.cannot_stop is not None:
            raise CannotRequest(self.cannot_stop)
        self.stops.append((key, reason))

    def forget(self, key: str) -> None:
        self.forgotten.append(key)

    def close(self) -> None:
        self.closed = True
