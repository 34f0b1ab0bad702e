"""A fake instrumented process for hostile-input tests: a real Unix socket speaking the real framing.

`FakeServer(path, messages)` serves every viewer that connects: the messages (maps, encoded
with `protocol.encode`, or raw bytes) in order, then holds the connection open until `send`
adds more or `stop` closes it; with `payload`, it answers every `get_payload` with it.
(`planted_server.py` is the one another user runs.)
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

from dspy_top import protocol

# What a job, an LM or a command line might hold that a terminal would obey.
HOSTILE = "\x1b]0;PWNED\x07\x1b[2J\x1b[31mred\x9b2J\u202eevil\x07\x00\x7f"


def hello(pid: int = 424242, argv: list[str] | None = None, **extra) -> dict:
    return {
        "t": "hello",
        "v": protocol.PROTOCOL_VERSION,
        "pid": pid,
        "ppid": 1,
        "argv": argv or ["fake-job.py"],
        "cwd": "/",
        "started_at": time.time() - 5,
        "python": "3",
        "dspy": "3",
        "dspy_top": "0",
        "mechanism": "execution-hooks",
        "history_capacity": 100,
        **extra,
    }


def counters(calls: int, cost: float = 0.001, **extra) -> dict:
    return {
        "calls": calls,
        "errors": 0,
        "retries": 0,
        "cache_hits": 0,
        "prompt_tokens": 100 * calls,
        "completion_tokens": 10 * calls,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": cost * calls,
        "unpriced_calls": 0,
        "cost_saved_usd": 0.0,
        "latency_s": 0.5 * calls,
        "in_flight": 0,
        "latency_hist": {10: calls},
        "last_at": time.time(),
        **extra,
    }


def stats(calls: int, path: str = "Fake.predict", model: str = "openai/fake", **extra) -> dict:
    return {
        "t": "stats",
        "at": time.time(),
        "totals": counters(calls),
        "modules": [{"path": path, "class": "Predict", "chain": ["Fake", "Predict"], **counters(calls)}],
        "models": [{"model": model, **counters(calls)}],
        "scopes": [],
        "dropped_events": 0,
        "dropped_viewer": 0,
        "internal_errors": 0,
        "tool_calls": 0,
        "tool_errors": 0,
        **extra,
    }


def snapshot(calls: int, **extra) -> dict:
    return {"t": "snapshot", "seq": 0, "calls": [], "stats": stats(calls, **extra)}


class FakeServer:
    """Listens on `path`; each viewer gets `messages`, then whatever `send` adds, until `stop`."""

    def __init__(
        self, path: Path, messages: list, backlog: int = 8, accept: bool = True, payload: dict | None = None
    ) -> None:
        self.path = Path(path)
        self.payload = payload
        self.frames = [m if isinstance(m, bytes) else protocol.encode(m) for m in messages]
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        self.listener.listen(backlog)
        self.listener.settimeout(0.05)
        self.accepting = threading.Event()
        if accept:
            self.accepting.set()
        self.viewers: list[socket.socket] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            if not self.accepting.wait(0.05):
                continue
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            with self.lock:
                for frame in self.frames:
                    conn.sendall(frame)
                self.viewers.append(conn)
            if self.payload is not None:
                threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        reader = protocol.FrameReader(max_frame=64 * 1024)
        while not self.stopped.is_set():
            try:
                data = conn.recv(65536)
            except OSError:
                return
            if not data:
                return
            for request in reader.feed(data):
                if request.get("t") == protocol.GET_PAYLOAD:
                    self.send_to(
                        conn,
                        {
                            "t": "payload",
                            "req": request.get("req"),
                            "id": request.get("id"),
                            "found": True,
                            "payload": self.payload,
                        },
                    )

    def send_to(self, conn: socket.socket, message: dict) -> None:
        with self.lock:
            try:
                conn.sendall(protocol.encode(message))
            except OSError:
                pass

    def send(self, message) -> None:
        """One more message to every viewer attached so far."""
        frame = message if isinstance(message, bytes) else protocol.encode(message)
        with self.lock:
            for conn in self.viewers:
                try:
                    conn.sendall(frame)
                except OSError:
                    pass

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(2)
        with self.lock:
            for conn in self.viewers:
                conn.close()
        self.listener.close()
