"""Bad sockets next to a real job: garbage, another protocol version, death mid-stream, silence,
permission refused. Each gets a status line; the rest of the view keeps working; no traceback, no hang."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from pathlib import Path

import pytest

from dspy_top import client, protocol
from dspy_top.model import Fleet
from dspy_top.sources.collector import Collector
from dspy_top.sources.local import local_sockets
from dspy_top.viewer import batch
from dspy_top.viewer.app import TopApp
from dspy_top.viewer.components.status_line import StatusLine
from tests.helpers.jobs import runtime_dir, start_job

pytestmark = pytest.mark.timeout(90)


def good_hello(pid=424242, version=protocol.PROTOCOL_VERSION):
    return protocol.encode(
        {
            "t": "hello",
            "v": version,
            "pid": pid,
            "ppid": 1,
            "argv": ["fake.py"],
            "cwd": "/",
            "started_at": time.time(),
            "python": "3",
            "dspy": "x",
            "dspy_top": "x",
            "mechanism": "execution-hooks",
            "history_capacity": 10,
        }
    )


def snapshot_frame():
    return protocol.encode({"t": "snapshot", "seq": 0, "calls": [], "stats": {"totals": {"calls": 7}}})


BEHAVIOURS = {
    "garbage": lambda: [b"\x00\x00\x00\x08not-msgpack-at-all"],
    "version": lambda: [good_hello(version=99)],
    "midstream": lambda: [good_hello(pid=434343), snapshot_frame(), b"\x00\x00\x10\x00\x81\xa1t"],
    "silent": lambda: [],
}


class FakeProcess:
    """A Unix socket that misbehaves the same way for every viewer that connects."""

    def __init__(self, path: Path, behaviour: str) -> None:
        self.path = path
        self.behaviour = behaviour
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(8)
        self.listener.settimeout(0.2)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        held = []
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            for chunk in BEHAVIOURS[self.behaviour]():
                conn.sendall(chunk)
            if self.behaviour == "silent":
                held.append(conn)  # say nothing, never close
            else:
                time.sleep(0.05)
                conn.close()
        for conn in held:
            conn.close()

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(2)
        self.listener.close()


@pytest.fixture
def fakes(monkeypatch):
    directory = runtime_dir()
    made = {name: FakeProcess(directory / f"{name}.sock", name) for name in BEHAVIOURS}
    denied = directory / "denied.sock"
    denied_server = FakeProcess(denied, "garbage")
    if os.geteuid() == 0:
        # root ignores file modes: refuse the connect the way the kernel does for others.
        real_socket = socket.socket

        class Refusing(real_socket):
            def connect(self, address):
                if str(address) == str(denied):
                    raise PermissionError(13, "Permission denied")
                return super().connect(address)

        monkeypatch.setattr(client.socket, "socket", Refusing)
    else:
        os.chmod(denied, 0)
    yield directory, {**{name: fake.path for name, fake in made.items()}, "denied": denied}
    for fake in [*made.values(), denied_server]:
        fake.stop()


EXPECTED = {
    "garbage": "bad data",
    "version": "protocol version 99",
    "midstream": "closed",
    "silent": "no hello",
    "denied": "permission denied",
}


@pytest.mark.slow
def test_bad_sockets_get_status_lines_and_the_real_job_keeps_showing(fakes):
    directory, paths = fakes
    job = start_job(directory)
    try:
        truth = job.run(3)

        async def main():
            fleet = Fleet()
            collector = Collector(
                fleet,
                [local_sockets(sockets=[*paths.values(), job.socket_path], rescan_every=0.2, connect_timeout=0.5)],
            )
            app = TopApp(fleet, collector, delay=0.2)
            async with app.run_test(size=(120, 40)) as pilot:
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    await pilot.pause(0.1)
                    rows = {p.key: p for p in app.snapshot.processes}
                    done = all(
                        rows.get(str(path)) is not None and rows[str(path)].state in ("failed", "lost")
                        for path in paths.values()
                    )
                    if done and app.snapshot.totals.calls >= truth["totals"]["calls"]:
                        break
                rows = {p.key: p for p in app.snapshot.processes}
                for name, path in paths.items():
                    row = rows[str(path)]
                    assert row.state in ("failed", "lost"), (name, row)
                    assert EXPECTED[name] in row.status.lower(), (name, row.status)
                assert rows[str(job.socket_path)].state == "running"
                # The stream that died after its snapshot still shows what it had sent.
                assert rows[str(paths["midstream"])].totals.calls == 7
                assert app.snapshot.totals.calls == truth["totals"]["calls"] + 7
                status = app.query_one(StatusLine)
                assert status.has_class("-problem")
                assert "pid" in str(status.render())
                # Still responsive.
                await pilot.press("t", "t", "space", "space")
                assert app.snapshot is not None

        asyncio.run(main())

        # Batch mode reports the same faults on stderr and still prints the good process.
        import io

        out = io.StringIO()
        code = batch.run(
            [local_sockets(sockets=[paths["version"], job.socket_path])], iterations=1, as_json=False, out=out
        )
        assert code == 0
        assert f"{truth['totals']['calls']:,} calls" in out.getvalue() or "calls" in out.getvalue()
    finally:
        job.kill()


def test_a_pid_that_does_not_exist_is_a_status_not_a_crash():
    fleet = Fleet()
    collector = Collector(fleet, [local_sockets(directory=runtime_dir(), pids=[2**22 + 12345])]).start()
    try:
        assert collector.wait_settled(3)
        row = fleet.snapshot().processes[0]
        assert row.state == "failed" and "no process" in row.status
    finally:
        collector.stop()
