"""The socket side of instrumentation, against real job processes: attach, faults, bounds, cleanup."""

import os
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from dspy_top import client, protocol
from dspy_top.instrumentation.server import STATS_EVERY
from tests.helpers.job_process import JobSubprocess
from tests.helpers.waiting import wait_until

JOB = Path(__file__).parent / "jobs" / "dummy_job.py"


@pytest.fixture
def runtime_dir(monkeypatch):
    # Short on purpose: AF_UNIX paths are limited to 107 bytes.
    directory = Path(tempfile.mkdtemp(prefix="dt", dir="/tmp")) / "rt"
    monkeypatch.setenv("DSPY_TOP_RUNTIME_DIR", str(directory))
    return directory


class Job(JobSubprocess):
    """tests/jobs' socket job: `calls` LM calls, held open until `release`; a word may be looked for twice."""

    def __init__(self, runtime_dir, calls, *extra, env=None):
        self.hold = runtime_dir.parent / "hold"
        self.go = runtime_dir.parent / "go"
        super().__init__(
            [sys.executable, str(JOB), str(calls), "--hold", str(self.hold), *extra],
            drop=(),
            stderr_path=runtime_dir.parent / "stderr",
            env={"DSPY_TOP_RUNTIME_DIR": str(runtime_dir), **(env or {})},
        )
        kind, path = self.expect("READY")
        self.socket_path = Path(path)

    def expect(self, word, timeout=60):
        return self.find(word, timeout)[1]

    def release(self):
        """Let the job end; everything it printed."""
        self.hold.touch()
        try:
            self.proc.wait(timeout=60)
        finally:
            self.proc.kill()
        assert self.proc.returncode == 0, self.stderr
        return "\n".join(self.output())


def read_until(connection, predicate, timeout=15):
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        for message in connection.poll(0.2):
            seen.append(message)
            if predicate(message):
                return seen
    raise AssertionError(f"condition not met; saw {[m['t'] for m in seen][-10:]}")


@pytest.mark.slow
def test_late_attach_gets_a_snapshot_of_everything_then_the_stream(runtime_dir):
    job = Job(runtime_dir, 500)
    job.expect("DONE")
    with client.Connection(job.socket_path) as conn:
        assert conn.hello.pid == job.proc.pid
        assert conn.hello.mechanism == "execution-hooks"
        snapshot = read_until(conn, lambda m: m["t"] == "snapshot")[-1]
        totals = snapshot["stats"]["totals"]
        assert totals["calls"] == 500 and totals["in_flight"] == 0
        paths = {m["path"]: m["calls"] for m in snapshot["stats"]["modules"]}
        assert paths == {"Pipeline.draft": 250, "Pipeline.check.predict": 250}
        assert len(snapshot["calls"]) == 500  # within the default history of 1000
        payload = conn.get_payload(snapshot["calls"][-1]["id"])
        assert payload["messages"][-1]["role"] == "user"
        assert "verdict" in repr(payload["outputs"])
        job.hold.touch()
        final = read_until(conn, lambda m: m["t"] == "exit")[-1]
        assert final["stats"]["totals"]["calls"] == 500
    job.release()
    assert not job.socket_path.exists()


@pytest.mark.slow
def test_call_events_travel_in_batches_and_every_viewer_sees_each_call_once(runtime_dir):
    job = Job(runtime_dir, 3000, "--start-after", str(runtime_dir.parent / "go"))
    raw = client.Connection(job.socket_path, batches=True)
    raw.connect()
    plain = client.Connection(job.socket_path)
    plain.connect()
    job.go.touch()
    # A new viewer gets the catch-up cached for STATS_EVERY (snapshot + the stream from its position):
    # the late one comes after it expired, so that its snapshot holds calls and its stream the rest.
    cache_expired_at = time.monotonic() + 2 * STATS_EVERY
    late, late_snapshot_ids, late_ids = None, [], []
    frames, raw_rows, plain_ids = 0, [], []
    ended = {"raw": False, "plain": False, "late": False}
    deadline = time.monotonic() + 90
    while not all(ended.values()) and time.monotonic() < deadline:
        for message in [] if ended["raw"] else raw.poll(0.05):  # after `exit` comes EOF
            assert message["t"] != "call"  # the process sends call events batched
            if message["t"] == "calls":
                frames += 1
                raw_rows += [dict(zip(message["fields"], row)) for row in message["rows"]]
            ended["raw"] |= message["t"] == "exit"
        for message in [] if ended["plain"] else plain.poll(0.0):
            assert message["t"] != "calls"  # handed over one call at a time
            if message["t"] == "call":
                plain_ids.append(message["id"])
            ended["plain"] |= message["t"] == "exit"
        if late is None and len(raw_rows) > 500 and time.monotonic() > cache_expired_at:  # a third, mid-stream
            late = client.Connection(job.socket_path)
            late.connect()
            job.hold.touch()  # the job may end once it is done
        if late is not None and not ended["late"]:
            for message in late.poll(0.0):
                if message["t"] == "snapshot":
                    late_snapshot_ids = [c["id"] for c in message["calls"]]
                elif message["t"] == "call":
                    late_ids.append(message["id"])
                ended["late"] |= message["t"] == "exit"
    assert all(ended.values()), ended
    everything = list(range(1, 3001))
    assert sorted(row["id"] for row in raw_rows) == everything
    assert [row["seq"] for row in raw_rows] == sorted(row["seq"] for row in raw_rows)
    assert frames < len(raw_rows) / 5  # batched, not one frame per call
    assert raw_rows[0]["path"] in ("Pipeline.draft", "Pipeline.check.predict") and raw_rows[0]["prompt_tokens"] == 0
    assert sorted(plain_ids) == everything
    # The late viewer: its snapshot (the most recent calls) then its stream, each call once, none missing.
    combined = late_snapshot_ids + late_ids
    assert late_snapshot_ids and len(combined) == len(set(combined))
    assert set(combined) == set(range(min(combined), 3001))
    for connection in (raw, plain, late):
        connection.close()
    job.release()


@pytest.mark.slow
def test_two_viewers_at_once_and_one_killed_mid_stream(runtime_dir):
    job = Job(runtime_dir, 4000, "--start-after", str(runtime_dir.parent / "go"))
    first = client.Connection(job.socket_path)
    first.connect()
    # A second viewer in another process, killed while calls are streaming.
    victim = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys, time\nfrom dspy_top import client\n"
                f"c = client.Connection({str(job.socket_path)!r}); c.connect(); print('ok', flush=True)\n"
                "while True: c.poll(0.1)\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert victim.stdout.readline().strip() == "ok"
    job.go.touch()
    calls, latest, killed = 0, None, False
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for message in first.poll(0.2):
            if message["t"] == "call":
                calls += 1
            elif message["t"] == "stats":
                latest = message
        if calls > 100 and not killed:
            victim.kill()
            victim.wait()
            killed = True
        # Stats can run a tick ahead of the call stream: wait until the two agree.
        if (
            latest
            and latest["totals"]["calls"] == 4000
            and calls + latest["dropped_viewer"] + latest["dropped_events"] == 4000
        ):
            break
    assert killed
    assert latest["totals"]["calls"] == 4000
    # Every call reached the surviving viewer or was counted as dropped: none vanished.
    assert calls + latest["dropped_viewer"] + latest["dropped_events"] == 4000
    first.close()
    assert "DONE 4000" in job.release().splitlines()


@pytest.mark.slow
def test_a_stopped_viewer_costs_the_job_nothing_and_drops_are_counted(runtime_dir):
    env = {"DSPY_TOP_VIEWER_BUFFER": str(64 * 1024)}
    job = Job(runtime_dir, 10_000, "--start-after", str(runtime_dir.parent / "go"), env=env)
    viewer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            (
                "import sys\nfrom dspy_top import client\n"
                f"c = client.Connection({str(job.socket_path)!r}); c.connect(); print('ok', flush=True)\n"
                "n = 0\nfor m in c.events():\n"
                "    if m['t'] == 'stats' and m['totals']['calls'] == 10000 and m['totals']['in_flight'] == 0:\n"
                "        print('dropped', m['dropped_viewer'], flush=True); break\n"
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert viewer.stdout.readline().strip() == "ok"
    os.kill(viewer.pid, signal.SIGSTOP)
    try:
        job.go.touch()
        job.expect("DONE", timeout=120)
        # The job ran to the end while its only viewer was frozen: nothing waited on it.
        assert process_state(viewer.pid) == "T"
    finally:
        os.kill(viewer.pid, signal.SIGCONT)
    line = viewer.stdout.readline().split()
    viewer.wait(timeout=30)
    assert line[0] == "dropped" and int(line[1]) > 0
    job.release()


def process_state(pid: int) -> str:
    """A process's state letter from /proc (T: stopped)."""
    line = Path(f"/proc/{pid}/stat").read_text()
    return line[line.rindex(")") + 2]


@pytest.mark.slow
def test_garbage_and_a_wrong_version_close_only_that_connection(runtime_dir):
    job = Job(runtime_dir, 10)
    job.expect("DONE")
    for bad, reason in (
        (b"GET / HTTP/1.1\r\n\r\n" * 4, "exceeds"),
        (protocol.encode({"t": "hello", "v": 99}), "version 99"),
        (struct.pack(">I", 5) + b"\xc1\xc1\xc1\xc1\xc1", "undecodable"),
    ):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(str(job.socket_path))
        sock.sendall(bad)
        reader = protocol.FrameReader()
        got = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            got.extend(reader.feed(data))
        sock.close()
        errors = [m for m in got if m["t"] == "error"]
        assert len(errors) == 1, got
        assert reason in errors[0]["reason"]
    # The job and a well-behaved viewer are untouched.
    with client.Connection(job.socket_path) as conn:
        snapshot = read_until(conn, lambda m: m["t"] == "snapshot")[-1]
        assert snapshot["stats"]["totals"]["calls"] == 10
        assert snapshot["stats"]["internal_errors"] == 0
    job.release()


@pytest.mark.slow
def test_socket_and_directory_are_private(runtime_dir):
    job = Job(runtime_dir, 2)
    assert stat.S_IMODE(runtime_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(job.socket_path.stat().st_mode) == 0o600
    assert job.socket_path.parent == runtime_dir
    job.release()


@pytest.mark.slow
def test_a_forked_child_serves_its_own_socket_and_numbers(runtime_dir):
    job = Job(runtime_dir, 4, "--fork")
    job.expect("DONE")
    # The child serves its socket before its own calls (its instrument() call starts the server):
    # it says CHILD once they are done, so its snapshot holds them.
    job.expect("CHILD")
    # The child is found the way a viewer finds it: by its own socket in the runtime dir.
    deadline = time.monotonic() + 60
    while len(endpoints := client.discover()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    (child_endpoint,) = [e for e in endpoints if e.pid != job.proc.pid]
    child_pid, child_socket = str(child_endpoint.pid), child_endpoint.socket_path
    assert Path(child_socket) != job.socket_path and child_pid in str(child_socket)
    with client.Connection(child_socket) as child_conn, client.Connection(job.socket_path) as parent_conn:
        child = read_until(child_conn, lambda m: m["t"] == "snapshot")[-1]["stats"]["totals"]
        parent = read_until(parent_conn, lambda m: m["t"] == "snapshot")[-1]["stats"]["totals"]
        assert child["calls"] == 2  # its own pipeline run only, none of the parent's
        assert parent["calls"] == 4
        assert child_conn.hello.pid == int(child_pid)
    job.release()


@pytest.mark.slow
def test_discovery_cleans_up_sockets_of_dead_processes(runtime_dir):
    job = Job(runtime_dir, 2)
    assert [e.pid for e in client.discover()] == [job.proc.pid]
    job.kill()  # SIGKILL: no chance to remove its socket
    assert job.socket_path.exists()
    assert client.discover() == []
    assert not job.socket_path.exists()
    with pytest.raises(client.ConnectError, match="exited"):
        client.Connection(job.socket_path).connect()


@pytest.mark.slow
def test_unknown_message_types_are_skipped(runtime_dir):
    job = Job(runtime_dir, 2)
    job.expect("DONE")
    with client.Connection(job.socket_path) as conn:
        conn._send({"t": "from_a_newer_viewer", "anything": [1, 2, 3]})
        snapshot = read_until(conn, lambda m: m["t"] == "snapshot")[-1]
        assert conn.get_payload(snapshot["calls"][0]["id"])["messages"]
    job.release()


@pytest.mark.slow
@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another user")
def test_another_users_connection_is_closed_without_a_word(runtime_dir):
    job = Job(runtime_dir, 2)
    job.expect("DONE")
    # Open the directory and socket up on purpose, so only the peer-uid check stands in the way.
    os.chmod(runtime_dir.parent, 0o755)
    os.chmod(runtime_dir, 0o755)
    os.chmod(job.socket_path, 0o666)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import os, socket\nos.setgid(65534); os.setuid(65534)\n"
                "s = socket.socket(socket.AF_UNIX); s.settimeout(5)\n"
                f"s.connect({str(job.socket_path)!r})\n"
                "data = s.recv(65536)\nprint(len(data))\n"
            ),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip() == "0"  # closed at once: no hello, no snapshot
    job.release()


def fake_process(runtime_dir, pid, frames, linger=0.0):
    """A one-viewer socket that sends a hello and `frames`, then closes after `linger` s. The thread it returns has
    `sent`, an event set once every frame is in the socket (its send buffer holds a few hundred KiB, so the viewer
    need not read for them to get there)."""
    runtime_dir.mkdir(parents=True)
    path = runtime_dir / f"{pid}.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    sent = threading.Event()

    def serve():
        conn, _ = listener.accept()
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        conn.sendall(
            protocol.encode(
                {"t": "hello", "v": protocol.PROTOCOL_VERSION, "pid": pid, "argv": ["job.py"], "started_at": 1.0}
            )
            + b"".join(frames)
        )
        sent.set()
        time.sleep(linger)
        conn.close()
        listener.close()

    server = threading.Thread(target=serve, daemon=True)
    server.sent = sent
    server.start()
    return path, server


def test_a_process_that_ends_before_the_viewer_says_hello_still_delivers_everything(runtime_dir):
    # A short job at exit: hello, snapshot and exit go out and the socket closes before the
    # viewer's own (optional) hello is sent. The viewer must still read all of it.
    path, server = fake_process(
        runtime_dir,
        4242,
        [
            protocol.encode({"t": "snapshot", "seq": 3, "calls": [], "stats": {"totals": {"calls": 3}}}),
            protocol.encode({"t": "exit", "at": 2.0, "stats": {"totals": {"calls": 3}}}),
        ],
    )
    connection = client.Connection(path)
    server_done = threading.Event()
    original_sendall = socket.socket.sendall

    def sendall_after_close(sock, data, *args):  # the viewer's hello waits until the process has closed
        if threading.current_thread() is not server:
            server.join(5)
            server_done.set()
        return original_sendall(sock, data, *args)

    socket.socket.sendall = sendall_after_close
    try:
        hello = connection.connect()
    finally:
        socket.socket.sendall = original_sendall
    assert server_done.is_set() and hello.pid == 4242
    kinds = [m["t"] for m in connection.poll(1.0)]
    assert kinds == ["snapshot", "exit"]
    with pytest.raises(client.ConnectError):
        connection.poll(1.0)


def test_poll_limits_count_the_calls_in_a_batch(runtime_dir):
    # The viewer reads a bounded number of events per turn: 20 batches of 500 calls are
    # 10,000 events, not 20 messages, or one turn would decode everything at once.
    rows = [[i] + [None] * (len(protocol.CALL_FIELDS) - 1) for i in range(500)]
    batch = protocol.encode({"t": "calls", "fields": protocol.CALL_FIELDS, "rows": rows})
    path, server = fake_process(runtime_dir, 4343, [batch] * 20, linger=5.0)
    with client.Connection(path, batches=True) as connection:
        wait_until(server.sent.is_set, "all 20 batches in the socket")
        first = connection.poll(0.5, limit=1200)
        assert [len(m["rows"]) for m in first] == [500, 500, 500]  # the third one crosses the limit
        rest = connection.poll(0.5)
        assert len(rest) == 17


def test_a_calls_batch_too_large_to_send_is_counted_and_the_server_goes_on(runtime_dir):
    from dspy_top.instrumentation.recorder import Recorder
    from dspy_top.instrumentation.server import SocketServer
    from dspy_top.instrumentation.viewers import ViewerConnection

    recorder = Recorder()
    server = SocketServer(recorder, hello=dict, materialize=dict)
    near, far = socket.socketpair()
    near.setblocking(False)
    viewer = server.viewers[near.fileno()] = ViewerConnection(near, server.stream.end, server.private_limit)
    huge = [1, 1] + ["x" * (protocol.MAX_FRAME + 1)] + [None] * (len(protocol.CALL_FIELDS) - 3)
    server.publisher.publish_calls([tuple(huge)])
    assert recorder.internal_errors == 1
    server._write(viewer)
    assert viewer.dropped == 1  # the lost batch counts as this viewer's dropped calls
    server.publisher.publish_calls([(2,) + (None,) * (len(protocol.CALL_FIELDS) - 1)])
    server._write(viewer)  # the next batch goes out
    far.settimeout(5)
    (message,) = protocol.FrameReader().feed(far.recv(65536))
    assert message["t"] == "calls" and [row[0] for row in message["rows"]] == [2]
    near.close()
    far.close()


def test_one_tick_sends_everything_queued_since_the_last(runtime_dir):
    # Ticks are 250 ms apart: a tick that sent only part of a busy process's queue would
    # let it fill up and drop events a viewer could have had.
    from dspy_top.instrumentation.recorder import Recorder
    from dspy_top.instrumentation.server import SocketServer
    from dspy_top.instrumentation.viewers import ViewerConnection

    recorder = Recorder(queue_capacity=12_000)
    server = SocketServer(recorder, hello=dict, materialize=dict)
    near, far = socket.socketpair()
    server.viewers[near.fileno()] = ViewerConnection(near, server.stream.end, server.private_limit)
    for _ in range(11_000):
        recorder.finish(recorder.begin("P.predict", "Predict", ("P", "Predict"), "m"), prompt_tokens=3)
    server._publish_events()
    reader = protocol.FrameReader()
    frames = b"".join(frame.data for frame in server.stream.frames)
    rows = [row for message in reader.feed(frames) for row in message["rows"]]
    assert len(rows) == 11_000 and [row[0] for row in rows] == list(range(1, 11_001))
    assert not recorder.events and recorder.dropped_events == 0
    near.close()
    far.close()
