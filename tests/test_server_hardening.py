"""Ordinary input never kills the job's server: odd text, huge numbers of names and alerts,
descriptor shortage, connection floods, stalled and lagging viewers at exit.

Real jobs (tests/jobs/line_job.py) on real sockets, and the real server in this process where
a test needs to feed its recorder what DSPy cannot produce (a lone surrogate in an error)."""

from __future__ import annotations

import os
import selectors
import socket
import tempfile
import threading
import time
from functools import partial
from pathlib import Path

import pytest

from dspy_top import client, protocol
from dspy_top.instrumentation.recorder import Recorder
from dspy_top.instrumentation.server import SocketServer
from dspy_top.instrumentation.stats_frame import OTHER
from tests.helpers.line_jobs import LineJob, calls_in, raw_connect, read_all
from tests.helpers.waiting import wait_until


@pytest.fixture
def runtime(monkeypatch):
    directory = Path(tempfile.mkdtemp(prefix="dt", dir="/tmp")) / "rt"
    monkeypatch.setenv("DSPY_TOP_RUNTIME_DIR", str(directory))
    return directory


wait_for = partial(wait_until, timeout=60.0)


def poll_until(connection, predicate, timeout=30.0):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in connection.poll(0.1):
            seen.append(message)
            if predicate(message):
                return seen
    raise AssertionError(f"not seen; got {[m['t'] for m in seen][-10:]}")


def serving(recorder, **options):
    """The real server on a real socket, in this process (stopped by the caller)."""
    server = SocketServer(
        recorder,
        hello=lambda: {"t": "hello", "v": protocol.PROTOCOL_VERSION, "pid": os.getpid(), "argv": ["in-process"]},
        materialize=lambda source: {"outputs": source.outputs},
        **options,
    )
    server.start()
    return server


def call(recorder, path="P.predict", model="m", error=None, **kept):
    record = recorder.begin(path, "Predict", ("P", "Predict"), model)
    for name, value in kept.items():
        setattr(record, name, value)
    recorder.finish(record, prompt_tokens=3, completion_tokens=1, error=error, keep=True)
    return record.id


# --- 1. text that is not UTF-8 -------------------------------------------------------------------


@pytest.mark.slow
def test_a_file_name_that_is_not_utf8_in_the_command_line_shows_escaped_and_serving_goes_on(runtime):
    job = LineJob(runtime, os.fsdecode(b"caf\xe9.txt"), os.fsdecode(b"\xff"))
    try:
        with client.Connection(job.socket_path) as connection:
            assert connection.hello.argv[-2:] == ["caf\\xe9.txt", "\\xff"]
            job.run(5)
            poll_until(connection, lambda m: m["t"] == "stats" and m["totals"]["calls"] == 10)
            job.send("exit")
            final = poll_until(connection, lambda m: m["t"] == "exit")[-1]
            assert final["stats"]["totals"]["calls"] == 10
        assert job.proc.wait(30) == 0
    finally:
        job.kill()


def test_lone_surrogates_in_an_error_and_a_response_travel_escaped(runtime):
    recorder = Recorder()
    server = serving(recorder)
    try:
        failed = call(recorder, error=RuntimeError("bad \ud800 text"), outputs=None)
        answered = call(recorder, outputs=["an answer with \udcff inside"])
        with client.Connection(server.path) as connection:
            snapshot = poll_until(connection, lambda m: m["t"] == "snapshot")[-1]
            messages = {c["id"]: c for c in snapshot["calls"]}
            assert messages[failed]["error_message"] == "bad \\ud800 text"
            assert connection.get_payload(answered)["outputs"] == ["an answer with \\xff inside"]
            call(recorder, error=ValueError("again \udce9"))
            live = poll_until(connection, lambda m: m["t"] == "call")[-1]
            assert live["error_message"] == "again \\xe9"
        assert recorder.internal_errors == 0
    finally:
        server.stop()


# --- 2. unbounded frames -----------------------------------------------------------------------


@pytest.mark.slow
def test_thirty_thousand_model_names_fold_into_other_and_the_frames_stay_small(runtime):
    recorder = Recorder()
    for number in range(30_000):
        call(recorder, path=f"P{number % 3}", model=f"provider/model-{number}")
    call(recorder, model="provider/model-7")  # the one with two calls leads
    server = serving(recorder)
    try:
        sock = raw_connect(server.path)
        reader, frames = protocol.FrameReader(), []
        while not any(m["t"] == "snapshot" for m in frames):
            data = sock.recv(1 << 20)
            assert data
            frames.extend(reader.feed(data))
        stats = [m for m in frames if m["t"] == "snapshot"][0]["stats"]
        models = {m["model"]: m for m in stats["models"]}
        assert len(models) == 100 and models["provider/model-7"]["calls"] == 2
        assert models[OTHER]["folded"] == 30_000 - 99 and sum(m["calls"] for m in models.values()) == 30_001
        for module in stats["modules"]:
            assert len(module["by_model"]) <= 100
        assert stats["totals"]["calls"] == 30_001
        sock.close()
        # Stats frames go out from now on, each small, and the server is still serving.
        with client.Connection(server.path) as connection:
            call(recorder, model="provider/new")
            message = poll_until(connection, lambda m: m["t"] == "stats" and m["totals"]["calls"] == 30_002)[-1]
            assert len(protocol.encode(message)) < 512 * 1024
    finally:
        server.stop()


@pytest.mark.slow
def test_twenty_thousand_stop_requests_make_one_alert(runtime):
    job = LineJob(runtime)
    try:
        sock = raw_connect(job.socket_path)
        sock.sendall(b"".join(protocol.encode({"t": "stop", "reason": "enough"}) for _ in range(20_000)))
        with client.Connection(job.socket_path) as connection:
            stats = poll_until(
                connection,
                lambda m: (
                    m["t"] == "stats"
                    and m.get("budget")
                    and m["budget"]["alerts"]
                    and m["budget"]["alerts"][0].get("repeats", 0) >= 19_999
                ),
            )[-1]
            assert len(stats["budget"]["alerts"]) == 1
            assert len(protocol.encode(stats)) < 64 * 1024
        sock.close()
    finally:
        job.kill()


def test_a_message_too_large_to_send_is_dropped_counted_and_serving_goes_on(runtime, monkeypatch):
    recorder = Recorder()
    server = serving(recorder)
    try:
        with client.Connection(server.path) as connection:
            poll_until(connection, lambda m: m["t"] == "snapshot")
            monkeypatch.setattr(protocol, "MAX_FRAME", 16 * 1024)
            recorder.scope_start("eval", "eval-1", {"metadata": {f"key{n}": "x" * 1000 for n in range(100)}})
            recorder.scope_start("eval", "eval-2", {"metadata": {}})
            started = poll_until(connection, lambda m: m["t"] == "eval_start")[-1]
            assert started["id"] == "eval-2"  # the one too large was dropped, the next one went
            # Every stats frame now lists the running eval-1, too large to send: each is
            # dropped and counted, and the stream goes on.
            wait_until(lambda: recorder.internal_errors >= 2, "two stats frames dropped as too large")
            later = call(recorder)
            assert poll_until(connection, lambda m: m["t"] == "call")[-1]["id"] == later
    finally:
        server.stop()


# --- 3. descriptors ---------------------------------------------------------------------------


def cpu_seconds(job):
    return float(job.ask("cpu", "CPU")[1])


@pytest.mark.slow
def test_out_of_descriptors_the_server_backs_off_and_accepts_again_later(runtime):
    job = LineJob(runtime, "--nofile", "150", env={"DSPY_TOP_MAX_VIEWERS": "1000"})
    waiting = []
    try:
        job.ask("hold 1000", "HELD")  # every descriptor the job may still open
        waiting = [raw_connect(job.socket_path) for _ in range(10)]  # queued: accept() fails with EMFILE
        before = cpu_seconds(job)
        time.sleep(2.0)
        assert cpu_seconds(job) - before < 0.3  # not spinning on the failed accept (main: 0.7 s)
        job.ask("release", "RELEASED")
        for sock in waiting:
            sock.settimeout(15)
            assert protocol.FrameReader().feed(sock.recv(65536))[0]["t"] == "hello"
        assert job.ask("open 20", "OPENED")[1] == "20"
    finally:
        for sock in waiting:
            sock.close()
        job.kill()


@pytest.mark.slow
def test_viewers_never_take_the_descriptors_a_job_near_its_limit_needs(runtime):
    job = LineJob(runtime, "--nofile", "150", env={"DSPY_TOP_MAX_VIEWERS": "1000"})
    held = []
    try:
        for _ in range(138):
            try:
                held.append(raw_connect(job.socket_path, timeout=2))
            except OSError:
                break
        firsts = []
        for sock in held:
            sock.settimeout(15)
            firsts.append(protocol.FrameReader().feed(sock.recv(65536))[0])
        refused = [m for m in firsts if m["t"] == "error"]
        assert refused and all("limit of open files" in m["reason"] for m in refused)
        assert len(refused) + sum(m["t"] == "hello" for m in firsts) == len(held) == 138
        assert job.ask("open 20", "OPENED")[1] == "20"  # the job's own files still open
        before = cpu_seconds(job)
        time.sleep(1.0)
        assert cpu_seconds(job) - before < 0.25
    finally:
        for sock in held:
            sock.close()
        job.kill()


@pytest.mark.slow
def test_a_connection_flood_fills_no_backlog_and_viewers_past_the_cap_are_told_why(runtime):
    job = LineJob(runtime, env={"DSPY_TOP_MAX_VIEWERS": "64"})
    socks = []
    try:
        job.run(500)  # a full history: each snapshot takes a moment to build
        socks = [raw_connect(job.socket_path, timeout=3) for _ in range(200)]  # none may fail
        firsts = []
        for sock in socks:
            sock.settimeout(30)
            firsts.append(protocol.FrameReader().feed(sock.recv(65536))[0])
        assert sum(m["t"] == "hello" for m in firsts) == 64
        refusals = [m for m in firsts if m["t"] == "error"]
        assert len(refusals) == 136 and all("too many viewers" in m["reason"] for m in refusals)
        assert "DSPY_TOP_MAX_VIEWERS=64" in refusals[0]["reason"]
    finally:
        for sock in socks:
            sock.close()
        job.kill()


# --- final numbers -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_viewer_that_stopped_reading_still_gets_the_final_numbers_and_exit(runtime):
    job = LineJob(runtime, env={"DSPY_TOP_VIEWER_BUFFER": "65536"})
    try:
        stalled = raw_connect(job.socket_path)
        truth = job.run(2500)["totals"]["calls"]  # about 500 KB of call events: more than its socket holds
        assert truth == 5000
        assert job.exit() == 0  # while the viewer is not reading: its socket is full
        messages = read_all(stalled)
        final = [m for m in messages if m["t"] == "exit"]
        assert final, [m["t"] for m in messages][-5:]
        stats = final[0]["stats"]
        assert stats["totals"]["calls"] == 5000
        assert len(calls_in(messages)) + stats["dropped_viewer"] + stats["dropped_events"] == 5000
        assert stats["dropped_viewer"] > 0  # it really lagged
    finally:
        job.kill()


@pytest.mark.slow
def test_each_of_a_hundred_viewers_gets_the_exit_frame_and_exact_final_numbers(runtime):
    job = LineJob(runtime, env={"DSPY_TOP_MAX_VIEWERS": "128"})
    results: dict[int, list] = {}
    try:
        socks = [raw_connect(job.socket_path) for _ in range(100)]

        def read(index, sock):
            results[index] = read_all(sock, timeout=120)

        readers = [threading.Thread(target=read, args=(i, s), daemon=True) for i, s in enumerate(socks)]
        for reader in readers:
            reader.start()
        job.run(2500)
        assert job.exit() == 0
        for reader in readers:
            reader.join(150)
        for index in range(100):
            final = [m for m in results[index] if m["t"] == "exit"]
            assert final, f"viewer {index} got no exit frame"
            stats = final[0]["stats"]
            assert stats["totals"]["calls"] == 5000
            received = len(calls_in(results[index]))
            assert received + stats["dropped_viewer"] + stats["dropped_events"] == 5000
    finally:
        job.kill()


# --- stalled viewers cost the others nothing -----------------------------------------------------------


@pytest.mark.slow
def test_stalled_viewers_share_one_buffer_and_each_counts_exactly_what_it_lost(runtime):
    import tracemalloc

    recorder = Recorder(queue_capacity=100_000)
    server = SocketServer(
        recorder, hello=lambda: {"t": "hello", "v": protocol.PROTOCOL_VERSION, "pid": 1}, materialize=dict
    )
    server.start()
    try:
        stalled = [raw_connect(server.path) for _ in range(40)]
        healthy = client.Connection(server.path, batches=True)
        healthy.connect()
        wait_for(lambda: len(server.viewers) == 41, what="41 viewers attached")
        received = []
        tracemalloc.start()
        for _ in range(40):  # 20,000 calls, about 3 MiB of frames
            for _ in range(500):
                call(recorder)
            server._wake()  # rather than wait for its tick
            deadline = time.monotonic() + 30
            while len(received) < recorder.sequence and time.monotonic() < deadline:
                for message in healthy.poll(0.05):
                    if message["t"] == "calls":
                        received.extend(row[1] for row in message["rows"])
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        # Forty stalled viewers: one copy of the stream (bounded by its 4 MiB), not forty.
        assert peak < 24 * 1024 * 1024
        assert sorted(received) == list(range(1, 20_001))
        server.stop()
        for sock in stalled:
            messages = read_all(sock)
            stats = [m for m in messages if m["t"] == "exit"][0]["stats"]
            assert len(calls_in(messages)) + stats["dropped_viewer"] == 20_000
            sock.close()
        healthy.close()
    finally:
        server.stop()


# --- a connection costs one snapshot per tick, not one each ------------------------------------------


def test_a_burst_of_viewers_shares_one_snapshot_and_each_sees_every_call_once(runtime, monkeypatch):
    from dspy_top.instrumentation import server as server_module

    clock = [1000.0]
    monkeypatch.setattr(server_module.time, "monotonic", lambda: clock[0])
    recorder = Recorder()
    built = []
    original = recorder.drain_and_snapshot
    recorder.drain_and_snapshot = lambda: built.append(1) or original()
    server = SocketServer(
        recorder, hello=lambda: {"t": "hello", "v": protocol.PROTOCOL_VERSION, "pid": 1}, materialize=dict
    )
    server._selector = selectors.DefaultSelector()  # driven by hand here, without its thread
    pairs = []
    for _ in range(50):
        call(recorder)
        near, far = socket.socketpair()
        pairs.append((near, far))
        server._admit(near)
        server._publish_events()
        server._write_all()
    assert len(built) == 1  # one snapshot for the whole burst within a stats tick
    clock[0] += 1.0
    near, far = socket.socketpair()
    pairs.append((near, far))
    server._admit(near)
    assert len(built) == 2  # and a fresh one after it
    for _, far in pairs:
        far.setblocking(False)
        messages = protocol.FrameReader().feed(far.recv(1 << 20))
        assert sorted(calls_in(messages)) == list(range(1, 51))  # every call exactly once
    for near, far in pairs:
        near.close()
        far.close()


@pytest.mark.slow
def test_fan_out_fuzz_kept_frames_arrive_once_in_order_and_call_drops_are_exact():
    """Seeded: frames of every kind, tiny socket buffers, random reads and trims."""
    import random

    from dspy_top.instrumentation.stream import CALLS, KEPT, STATS, FrameStream
    from dspy_top.instrumentation.viewers import ViewerConnection

    rng = random.Random(20)
    deadline = time.monotonic() + 20
    for _ in range(12):
        if time.monotonic() > deadline:
            break
        stream = FrameStream(limit=rng.choice([3_000, 30_000, 300_000]))
        ends = []
        for _ in range(3):
            near, far = socket.socketpair()
            for sock in (near, far):
                sock.setblocking(False)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            ends.append((ViewerConnection(near, stream.end, 1 << 30), far, protocol.FrameReader(), []))
        calls, kept, private = 0, [], {index: [] for index in range(3)}
        pace = {id(end[0]): rate for end, rate in zip(ends, (0.9, 0.2, 0.02))}  # a fast, a slow, a stalled one

        def pump(viewer, far, reader, got, everything=False, pace=pace, stream=stream):
            if not everything and rng.random() > pace[id(viewer)]:
                return
            if everything or rng.random() < 0.5:
                viewer.blocked = False
                try:
                    viewer.write(stream)
                except BlockingIOError:
                    pass
            if everything or rng.random() < 0.5:
                try:
                    got.extend(reader.feed(far.recv(rng.choice([100, 3000, 1 << 16]) if not everything else 1 << 20)))
                except BlockingIOError:
                    pass

        for step in range(300):
            roll = rng.random()
            if roll < 0.5:
                rows = [[calls + n + 1] for n in range(rng.randint(1, 40))]
                calls += len(rows)
                stream.append(protocol.encode({"t": "calls", "fields": ["id"], "rows": rows}), CALLS, len(rows))
            elif roll < 0.65:
                kept.append(step)
                stream.append(protocol.encode({"t": "eval_start", "id": step, "pad": "x" * rng.randint(0, 500)}), KEPT)
            elif roll < 0.8:
                stream.append(protocol.encode({"t": "stats", "step": step}), STATS)
            elif roll < 0.85:
                index = rng.randrange(3)
                private[index].append(step)
                ends[index][0].send_first(protocol.encode({"t": "payload", "req": step}))
            stream.trim([end[0] for end in ends])
            for end in ends:
                pump(*end)
        for _ in range(10_000):
            if not any(end[0].pending(stream) for end in ends):
                break
            for end in ends:
                pump(*end, everything=True)
        for index, (viewer, far, reader, got) in enumerate(ends):
            try:
                got.extend(reader.feed(far.recv(1 << 20)))
            except BlockingIOError:
                pass
            received = calls_in(got)
            assert len(received) == len(set(received)) and len(received) + viewer.dropped == calls
            assert [m["id"] for m in got if m["t"] == "eval_start"] == kept
            assert [m["req"] for m in got if m["t"] == "payload"] == private[index]
            steps = [m["step"] for m in got if m["t"] == "stats"]
            assert steps == sorted(steps) and all("dropped_viewer" in m for m in got if m["t"] == "stats")
            viewer.close()
            far.close()


@pytest.mark.slow
def test_names_in_call_rows_are_redacted_like_everything_else(runtime):
    recorder = Recorder()
    server = serving(recorder)
    try:
        with client.Connection(server.path) as connection:
            poll_until(connection, lambda m: m["t"] == "snapshot")
            call(recorder, model="openai/gpt-4o-mini")
            call(recorder, model="proxy/sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXyZ4")
            call(recorder, model="openai/gpt-4o-mini", error=RuntimeError("key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wX"))
            messages = poll_until(connection, lambda m: m["t"] == "call" and m["id"] == 3)
            rows = [m for m in messages if m["t"] == "call"]
            assert [m["model"] for m in rows] == ["openai/gpt-4o-mini", "proxy/[redacted]", "openai/gpt-4o-mini"]
            assert rows[2]["error_message"] == "key [redacted]"
            stats = poll_until(connection, lambda m: m["t"] == "stats" and m["totals"]["calls"] == 3)[-1]
            assert sorted(m["model"] for m in stats["models"]) == ["openai/gpt-4o-mini", "proxy/[redacted]"]
    finally:
        server.stop()


def test_a_tap_gets_every_event_redacted_with_no_viewer_attached(runtime, monkeypatch):
    """How a recording will consume the stream: every event, in order, after redaction."""
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tap-secret-value-1234")
    recorder = Recorder()
    server = serving(recorder)
    seen: list[dict] = []
    server.taps.append(seen.append)
    try:
        recorder.scope_start("eval", "eval-1", {"metadata": {"api_key": "k-1", "note": "tap-secret-value-1234"}})
        for _ in range(3):
            call(recorder, error=RuntimeError("failed with tap-secret-value-1234"))
        recorder.scope_end("eval-1", {})
        wait_for(lambda: any(m["t"] == "stats" and m["totals"]["calls"] == 3 for m in seen), what="stats tapped")
    finally:
        server.stop()
    kinds = [m["t"] for m in seen]
    assert kinds[:3] == ["eval_start", "calls", "eval_end"] and kinds[-1] == "exit"
    rows = [row for m in seen if m["t"] == "calls" for row in m["rows"]]
    assert [row[1] for row in rows] == [1, 2, 3]
    assert "tap-secret-value-1234" not in repr(seen) and "k-1" not in repr(seen)
    assert seen[-1]["stats"]["totals"]["calls"] == 3
