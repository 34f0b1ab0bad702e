"""A viewer that finds a process busy accepting waits for it, saying so, instead of giving up (issue 20, item 7)."""

from __future__ import annotations

import errno
import os
import socket
import time

import pytest

from dspy_top import client, protocol
from dspy_top.model import Fleet
from dspy_top.sources.collector import Collector
from dspy_top.sources.local import local_sockets
from tests.helpers.fake_server import FakeServer, hello, snapshot
from tests.helpers.jobs import runtime_dir

pytestmark = pytest.mark.timeout(60)


def fill_backlog(path) -> list[socket.socket]:
    """Connections that fill a listener's queue until the next connect gets EAGAIN."""
    held = []
    for _ in range(64):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(str(path))
        except BlockingIOError as exc:
            assert exc.errno == errno.EAGAIN
            sock.close()
            return held
        held.append(sock)
    raise AssertionError("the listen queue never filled")


def wait_state(fleet, key, predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with fleet.lock:
            process = fleet.processes.get(key)
            if process is not None and predicate(process):
                return process
        time.sleep(0.02)
    raise AssertionError(f"timed out; the process is {process and (process.state, process.status)}")


def test_a_full_listen_queue_is_retried_with_a_status_until_the_process_accepts():
    directory = runtime_dir()
    fake = FakeServer(directory / "busy.sock", [hello(717171), snapshot(7)], backlog=1, accept=False)
    held = fill_backlog(fake.path)
    fleet = Fleet()
    collector = Collector(fleet, [local_sockets(sockets=[fake.path], rescan_every=0.2, retry_for=20)]).start()
    try:
        waiting = wait_state(fleet, str(fake.path), lambda p: "listen queue is full" in p.status)
        assert waiting.state == "connecting" and "retrying" in waiting.status
        fake.accepting.set()  # the process catches up
        attached = wait_state(fleet, str(fake.path), lambda p: p.state == "running" and p.totals.calls == 7)
        assert attached.status == "running"
    finally:
        collector.stop()
        for sock in held:
            sock.close()
        fake.stop()


@pytest.mark.slow
def test_retrying_is_bounded_and_then_says_why():
    directory = runtime_dir()
    fake = FakeServer(directory / "stuck.sock", [hello(727272)], backlog=1, accept=False)
    held = fill_backlog(fake.path)
    try:
        started = time.monotonic()
        heard = []
        with pytest.raises(client.ConnectError, match="listen queue is full.*gave up after 0.5s"):
            client.Connection(fake.path, retry_for=0.5).connect(on_wait=heard.append)
        assert time.monotonic() - started < 5 and heard
    finally:
        for sock in held:
            sock.close()
        fake.stop()


def test_a_live_process_not_listening_yet_is_retried_a_stale_socket_is_not():
    directory = runtime_dir()
    path = directory / f"{os.getpid()}.sock"  # our own pid: alive
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))  # bound, not listening: connect is refused
    fleet = Fleet()
    collector = Collector(fleet, [local_sockets(sockets=[path], rescan_every=0.2, retry_for=20)]).start()
    try:
        wait_state(fleet, str(path), lambda p: "not accepting yet" in p.status)
        listener.listen(4)
        conn = None
        deadline = time.monotonic() + 20
        while conn is None and time.monotonic() < deadline:
            try:
                listener.settimeout(0.2)
                conn, _ = listener.accept()
            except TimeoutError:
                continue
        conn.sendall(protocol.encode(hello(os.getpid())) + protocol.encode(snapshot(3)))
        wait_state(fleet, str(path), lambda p: p.state == "running" and p.totals.calls == 3)
        conn.close()
    finally:
        collector.stop()
        listener.close()
    # A dead pid's socket that refuses is stale: no waiting.
    stale = directory / "4194000.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(stale))
    dead.close()
    started = time.monotonic()
    with pytest.raises(client.ConnectError, match="stale socket"):
        client.Connection(stale).connect()
    assert time.monotonic() - started < 2
