"""The recording file: round trips of real protocol messages, seeking, payloads, caps, damage, follow.

Messages come from the real Recorder (as the server thread drains it) and, in one test,
from a real DSPy job over its socket; a real subprocess is killed with SIGKILL mid-write.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dspy_top import client, protocol
from dspy_top.recording import Recording, RecordingError, RecordingWriter, frames, runs
from dspy_top.recording import writer as writer_module
from dspy_top.recording.summary import list_runs, summarize
from tests.helpers.served_job import FakeClock, ServedJob, events_of, normal, recorded

REPO = Path(__file__).resolve().parents[1]
RECORDING_JOB = Path(__file__).parent / "jobs" / "recording_job.py"
# --- round trips ---------------------------------------------------------------------------------


def test_every_message_and_payload_comes_back_as_served(tmp_path, small_checkpoints):
    job = recorded(tmp_path)
    with Recording(job.writer.path) as recording:
        assert recording.hello == normal(job.hello)
        messages = list(recording.messages())
        assert events_of(messages) == job.sent
        assert all(len(m["rows"]) <= 500 for m in messages if m["t"] == "calls")
        for call_id, payload in job.payloads.items():
            assert recording.payload(call_id) == payload
        assert recording.payload(10**9) is None
        index = recording.index()
        assert index.complete and len(index.checkpoints) > 3 and len(index.payloads) > 3
        assert recording.damage == []


def test_end_state_equals_the_process_final_numbers(tmp_path, small_checkpoints):
    job = recorded(tmp_path)
    truth = normal(job.recorder.stats())
    with Recording(job.writer.path) as recording:
        end = recording.end_state()
    assert end.complete and not end.live
    assert end.stats["totals"] == truth["totals"]
    assert end.stats["modules"] == truth["modules"]
    assert end.state.exit["stats"]["totals"]["calls"] == job.recorder.stats()["totals"]["calls"]
    assert end.state.calls == truth["totals"]["calls"]
    assert end.state.payloads == len(job.payloads)
    scopes = end.state.scopes
    assert scopes["compile-1"]["state"] == "done"
    assert [scopes[f"eval-{n}"]["score"] for n in (1, 2, 3)] == [40.0, 50.0, 60.0]
    assert scopes["eval-3"]["usage"]["calls"] == 40
    summary = summarize(job.writer.path)
    assert summary.calls == truth["totals"]["calls"] and summary.cost_usd == truth["totals"]["cost_usd"]
    assert summary.best_score == 60.0 and summary.state == "complete"
    assert summary.command == "optimize.py --trials 3" and summary.pid == 4242
    assert summary.duration == pytest.approx(job.clock() - job.hello["started_at"])


@pytest.mark.slow
def test_a_real_dspy_jobs_stream_round_trips(tmp_path):
    """What a viewer received from a real DSPy job (simulated LM, real socket), written and read back."""
    from tests.helpers.jobs import runtime_dir, start_job

    directory = runtime_dir()
    job = start_job(directory, lm="sim", history=1000)
    try:
        with client.Connection(job.socket_path, batches=True) as connection:
            hello = {"t": "hello", **dataclasses.asdict(connection.hello)}
            writer = RecordingWriter.create(tmp_path / "job.dtop", hello)
            truth = job.run(6)
            received, payloads = [], {}
            deadline = time.monotonic() + 30
            while sum(len(m.get("rows", ())) for m in received) < truth["totals"]["calls"]:
                assert time.monotonic() < deadline, "the job's calls never arrived"
                for message in connection.poll(timeout=0.5):
                    received.append(message)
            for message in events_of(received):
                if message["t"] == "call":
                    payloads[message["id"]] = connection.get_payload(message["id"])
            for message in connection.poll(timeout=0.2):
                received.append(message)
            job.exit()
            for message in connection.events(timeout=10):
                received.append(message)
            assert received[-1]["t"] == "exit"
            for message in received:
                writer.add(message)
            for call_id, payload in payloads.items():
                writer.add_payload(call_id, payload)
            writer.close()
    finally:
        job.kill()
        shutil.rmtree(directory, ignore_errors=True)
    with Recording(tmp_path / "job.dtop") as recording:
        stored = events_of(recording.messages())
        # Every event as served; of the stats, those the writer keeps (a heartbeat, the same
        # numbers again, is not stored: here the final stats each viewer gets before `exit`).
        assert [m for m in stored if m["t"] != "stats"] == [m for m in events_of(received) if m["t"] != "stats"]
        served_stats = [m for m in events_of(received) if m["t"] == "stats"]
        assert all(m in served_stats for m in stored if m["t"] == "stats")
        end = recording.end_state()
        assert end.stats["totals"]["calls"] == truth["totals"]["calls"] == 12
        assert end.stats["totals"]["prompt_tokens"] == truth["totals"]["prompt_tokens"]
        assert end.stats["totals"]["cost_usd"] == truth["totals"]["cost_usd"]
        assert len(payloads) == 12
        for call_id, payload in payloads.items():
            assert payload["messages"][0]["role"] == "system"
            assert recording.payload(call_id) == normal(payload)


# --- seeking -------------------------------------------------------------------------------------


def test_seeking_to_a_checkpoint_gives_its_state_then_the_messages_after_it(tmp_path, small_checkpoints):
    job = recorded(tmp_path)
    with Recording(job.writer.path) as recording:
        everything = events_of(recording.messages())
        checkpoints = recording.index().checkpoints
        middle = checkpoints[len(checkpoints) // 2]
        for position in (recording.seek(checkpoint=len(checkpoints) // 2), recording.seek(at=middle.at + 0.001)):
            assert position.offset == middle.offset
            messages = list(recording.messages(position, history=250))
            snapshot = messages[0]
            assert snapshot["t"] == "snapshot" and snapshot["seq"] == middle.seq
            # The rest is exactly what followed it...
            after = events_of(messages[1:])
            assert after and after == everything[len(everything) - len(after) :]
            assert min(e["seq"] for e in after if "seq" in e) > middle.seq
            # ...and the state there is what every message before it made it.
            before = everything[: len(everything) - len(after)]
            assert max(e["seq"] for e in before if "seq" in e) == middle.seq
            last_stats = [e for e in before if e["t"] == "stats"][-1]
            assert snapshot["stats"]["totals"] == last_stats["totals"]
            calls_before = [e for e in before if e["t"] == "call"]
            assert len(calls_before) > 250 and normal(snapshot["calls"]) == calls_before[-250:]
        assert recording.seek(at=0).state is None  # before the first checkpoint: the start
        assert recording.seek(fraction=1.0).offset == checkpoints[-1].offset
        assert recording.seek(checkpoint=-1).offset == checkpoints[-1].offset


# --- crash safety --------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_writer_killed_with_sigkill_leaves_everything_it_flushed(tmp_path):
    path = tmp_path / "killed.dtop"
    job = subprocess.Popen(
        [sys.executable, str(RECORDING_JOB), str(path), "--calls-per-tick", "300"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        flushed = seq = 0
        for line in job.stdout:
            _, calls, seq = line.split()
            flushed, seq = int(calls), int(seq)
            if flushed >= 30_000:  # past a checkpoint (every 20,000 calls), into the tail after it
                break
        os.kill(job.pid, signal.SIGKILL)
        job.wait(10)
    finally:
        if job.poll() is None:
            job.kill()
    with Recording(path) as recording:
        assert not recording.live
        end = recording.end_state()
        assert not end.complete
        assert end.state.calls >= flushed and end.state.seq >= seq
        assert end.stats["totals"]["calls"] >= flushed
        assert len(recording.index().checkpoints) >= 1
        rows = sum(len(m["rows"]) for m in recording.messages() if m["t"] == "calls")
        assert rows == end.state.calls
        assert recording.payload(flushed)["messages"][0]["role"] == "system"
    summary = summarize(path)
    assert summary.state == "cut off" and summary.calls == end.stats["totals"]["calls"]


def test_heartbeat_stats_are_not_stored(tmp_path):
    job = ServedJob(tmp_path / "idle.dtop")
    job.calls(10)
    for _ in range(20):  # a job waiting on a slow call: the server's heartbeat every 2 s
        job.clock.now += 2
        job.give({"t": "stats", **job.recorder.stats(), "dropped_viewer": 0})
    job.calls(10)
    job.close()
    assert job.skipped_stats >= 20
    with Recording(job.writer.path) as recording:
        stored = [m for m in recording.messages() if m["t"] == "stats"]
        assert events_of(recording.messages()) == job.sent
        assert len(stored) == len([m for m in job.sent if m["t"] == "stats"]) < 10
        assert recording.end_state().stats["totals"]["calls"] == 20


def test_a_writer_flushes_by_itself_within_half_a_second(tmp_path):
    clock = FakeClock()
    job = ServedJob(tmp_path / "self.dtop", clock=clock)
    size = job.writer.path.stat().st_size
    record = job.recorder.begin("P", "Predict", ("P",), "m")
    job.recorder.finish(record, prompt_tokens=5, completion_tokens=1, cost=0.0)
    job.writer.add_events(job.recorder.drain())
    assert job.writer.path.stat().st_size == size  # buffered: no flush was due yet
    clock.now += writer_module.FLUSH_EVERY
    job.writer.add({"t": "stats", **job.recorder.stats()})  # no flush() call: the writer's own deadline
    assert job.writer.path.stat().st_size > size
    with Recording(job.writer.path) as recording:
        assert [m["t"] for m in recording.messages()] == ["snapshot", "calls", "stats"]


def test_malformed_input_never_raises_into_the_server_thread(tmp_path):
    job = ServedJob(tmp_path / "odd.dtop")
    job.calls(20)
    job.writer.add({"t": "calls", "fields": list(protocol.CALL_FIELDS), "rows": 5})  # not rows: skipped
    job.writer.add({"t": "stats", "totals": {1, 2}, "at": object()})  # values msgpack cannot carry: as text
    job.writer.add_payloads([(99_999, {"messages": [object()]}), (99_998, None)])
    job.writer.flush(force=True)
    assert job.writer.failed is None
    assert [n["event"] for n in job.writer.state.notes] == ["unstorable_message"]
    payloads = job.writer._payloads  # a surprise inside (either compressor): the recording stops, quietly
    payloads.compressor = "not a compressor"
    if payloads.native is not None:
        payloads.native = "not a compressor"
    job.writer.add_payload(100_000, {"messages": []})
    job.writer.flush(force=True)
    assert "internal error" in job.writer.failed
    job.close()
    assert job.writer.closed and job.writer._fd is None
    with Recording(job.writer.path) as recording:
        end = recording.end_state()
        assert end.state.calls == 20 and not end.complete
        assert recording.payload(99_999)["messages"][0].startswith("<object object")
        assert recording.payload(99_998) is None


def test_a_failing_disk_stops_the_recording_not_the_job(tmp_path):
    path = tmp_path / "full.dtop"
    result = subprocess.run(
        [
            sys.executable,
            str(RECORDING_JOB),
            str(path),
            "--ticks",
            "40",
            "--calls-per-tick",
            "200",
            "--fsize-limit",
            "60000",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "FAILED writing" in result.stdout and "CLOSED 8000" in result.stdout
    assert path.stat().st_size <= 60000
    with Recording(path) as recording:
        end = recording.end_state()
        assert 0 < end.state.calls < 8000
        assert not end.complete
        assert recording.damage and all(str(path) in str(d) for d in recording.damage)


# --- damaged files -------------------------------------------------------------------------------


def test_a_fifo_or_a_name_with_a_nul_is_refused_at_once(tmp_path):
    # Opening a FIFO for reading waits for a writer: the open must not (a name from the wire or typed).
    fifo = tmp_path / "pipe.dtop"
    os.mkfifo(fifo)
    outcome: list = []

    def open_it():
        try:
            Recording(fifo)
        except RecordingError as exc:
            outcome.append(str(exc))

    opener = threading.Thread(target=open_it, daemon=True)
    opener.start()
    opener.join(10)
    assert not opener.is_alive(), "opening a FIFO as a recording hung"
    assert outcome and "pipe.dtop: not a regular file" in outcome[0]
    with pytest.raises(RecordingError, match="not a file name"):
        Recording(str(tmp_path / "a\x00b.dtop"))


def test_empty_foreign_and_newer_files_are_refused_with_their_name_and_offset(tmp_path):
    empty = tmp_path / "empty.dtop"
    empty.write_bytes(b"")
    with pytest.raises(RecordingError, match=r"empty\.dtop: empty file.*at byte 0"):
        Recording(empty)
    foreign = tmp_path / "notes.dtop"
    foreign.write_text('{"calls": 3}\n')
    with pytest.raises(RecordingError, match=r"notes\.dtop: not a dspy-top recording.*at byte 0"):
        Recording(foreign)
    job = recorded(tmp_path, calls=100)
    data = bytearray(job.writer.path.read_bytes())
    newer = tmp_path / "newer.dtop"
    newer.write_bytes(data[:12] + (frames.FORMAT_MAJOR + 1).to_bytes(2, "big") + data[14:])
    with pytest.raises(
        RecordingError,
        match=rf"newer\.dtop: recording format 2\.{frames.FORMAT_MINOR} is newer "
        r".*upgrade dspy-top",
    ):
        Recording(newer)
    short = tmp_path / "short.dtop"
    short.write_bytes(data[:7])
    with pytest.raises(RecordingError, match=r"short\.dtop: truncated.*at byte 7"):
        Recording(short)
    headless = tmp_path / "headless.dtop"
    headless.write_bytes(data[:30])
    with pytest.raises(RecordingError, match=r"headless\.dtop: truncated: the file ends inside its header frame"):
        Recording(headless)


def test_a_newer_minor_version_with_unknown_frames_and_messages_is_read(tmp_path):
    job = ServedJob(tmp_path / "minor.dtop")
    job.calls(50)
    job.writer._write(frames.frame(ord("Z"), frames.PLAIN, {"what": "a later kind"}, b"\x01\x02"))
    job.give({"t": "future_event", "x": 1})
    job.calls(50)
    job.close()
    data = bytearray(job.writer.path.read_bytes())
    data[14:16] = (frames.FORMAT_MINOR + 5).to_bytes(2, "big")
    job.writer.path.write_bytes(bytes(data))
    with Recording(job.writer.path) as recording:
        assert recording.format_version == (1, frames.FORMAT_MINOR + 5)
        assert events_of(recording.messages()) == job.sent
        assert {"t": "future_event", "x": 1} in job.sent
        assert recording.end_state().stats["totals"]["calls"] == 100
        assert recording.damage == []


def test_a_file_cut_anywhere_reads_up_to_the_cut_and_says_where(tmp_path, small_checkpoints):
    job = recorded(tmp_path, calls=600)
    data = job.writer.path.read_bytes()
    with Recording(job.writer.path) as whole:
        everything = events_of(whole.messages())
    header_end = Recording(job.writer.path)._first
    cut_path = tmp_path / "cut.dtop"
    step = max(1, (len(data) - header_end) // 23)
    for cut in list(range(header_end + 1, len(data) - 1, step)) + [len(data) - 1]:
        cut_path.write_bytes(data[:cut])
        with Recording(cut_path) as recording:
            got = events_of(recording.messages())
            assert got == everything[: len(got)], cut
            damage = recording.damage
            assert damage, cut
            assert all(str(cut_path) in str(d) and d.offset < cut for d in damage)
            assert "at byte" in str(damage[0])
            end = recording.end_state()  # never raises: the state of what is there
            assert end.state.calls <= 600 + 120 and not end.complete


def test_a_corrupted_stretch_is_skipped_and_what_follows_is_read(tmp_path, small_checkpoints):
    job = recorded(tmp_path, calls=1200)
    with Recording(job.writer.path) as whole:
        everything = events_of(whole.messages())
        segments = whole.index().messages
    victim = segments[len(segments) // 2]
    data = bytearray(job.writer.path.read_bytes())
    for offset in range(victim.offset + 40, victim.offset + 60):
        data[offset] ^= 0xFF
    broken = tmp_path / "broken.dtop"
    broken.write_bytes(bytes(data))
    with Recording(broken) as recording:
        got = events_of(recording.messages())
        assert recording.damage and recording.damage[0].offset == victim.offset
        assert "broken.dtop" in str(recording.damage[0]) and f"at byte {victim.offset:,}" in str(recording.damage[0])
        lost = len(everything) - len(got)
        assert 0 < lost < len(everything) // 4
        # Everything before the damaged segment, then everything from the next segment on.
        assert got[:10] == everything[:10] and got[-10:] == everything[-10:]
        assert recording.end_state().stats["totals"] == normal(job.recorder.stats())["totals"]
        assert all(recording.payload(i) == p for i, p in job.payloads.items())
    # A flipped byte inside a frame's compressed data: its checksum says so.
    with Recording(job.writer.path) as whole:
        frame = next(
            f
            for f in whole._view.walk(victim.offset)
            if f.kind == frames.MESSAGES
            and f.meta[frames.SEGMENT] == victim.offset
            and f.offset > victim.offset
            and f.data_length > 100
        )
    data = bytearray(job.writer.path.read_bytes())
    data[frame.data_offset + frame.data_length // 2] ^= 0x01
    broken.write_bytes(bytes(data))
    with Recording(broken) as recording:
        got = events_of(recording.messages())
        assert [(d.offset, "checksum" in d.reason) for d in recording.damage] == [(frame.offset, True)]
        assert got[-10:] == everything[-10:] and len(got) < len(everything)
    # Garbage over frame headers: the reader finds the next frame by its sync bytes.
    data = bytearray(job.writer.path.read_bytes())
    data[victim.offset : victim.offset + 4000] = os.urandom(4000)
    broken.write_bytes(bytes(data))
    with Recording(broken) as recording:
        recording._footer = None  # walk instead of trusting the footer
        recording._not_live = True
        got = events_of(recording.messages())
        assert "skipped" in str(recording.damage[0]) and got[-10:] == everything[-10:]


def test_a_damaged_footer_falls_back_to_walking_the_file(tmp_path, small_checkpoints):
    job = recorded(tmp_path)
    data = bytearray(job.writer.path.read_bytes())
    data[-20] ^= 0xFF  # inside the index frame
    job.writer.path.write_bytes(bytes(data))
    with Recording(job.writer.path) as recording:
        index = recording.index()
        assert not index.complete and len(index.checkpoints) > 3
        assert events_of(recording.messages()) == job.sent
        assert recording.end_state().stats["totals"] == normal(job.recorder.stats())["totals"]
        assert any("footer" in str(d) or "index" in str(d) for d in recording.damage)


# --- live files ----------------------------------------------------------------------------------


def test_follow_reads_a_file_as_it_is_written_and_two_readers_agree(tmp_path):
    job = ServedJob(tmp_path / "live.dtop")
    job.calls(100)
    followed: list[list[dict]] = [[], []]
    stop = threading.Event()

    def follow(slot):
        with Recording(job.writer.path) as recording:
            for message in recording.follow(poll=0.02, stop=stop):
                followed[slot].append(message)

    readers = [threading.Thread(target=follow, args=(n,), daemon=True) for n in (0, 1)]
    for reader in readers:
        reader.start()
    with Recording(job.writer.path) as snapshot_reader:
        assert snapshot_reader.live
        deadline = time.monotonic() + 30
        while len(followed[0]) < 3 or len(followed[1]) < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        end = snapshot_reader.end_state()
        assert end.live and end.stats["totals"]["calls"] == 100
        job.calls(300)
        assert snapshot_reader.payload(300) == job.payloads[300]  # a payload written after it opened
    job.close()
    for reader in readers:
        reader.join(30)
    stop.set()
    assert not any(reader.is_alive() for reader in readers)
    assert events_of(followed[0]) == job.sent == events_of(followed[1])
    with Recording(job.writer.path) as recording:
        assert not recording.live and recording.end_state().complete


def test_follow_ends_when_the_writer_dies(tmp_path):
    path = tmp_path / "dies.dtop"
    job = subprocess.Popen(
        [sys.executable, str(RECORDING_JOB), str(path), "--calls-per-tick", "50"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        job.stdout.readline()
        seen = []
        with Recording(path) as recording:
            assert recording.live
            for message in recording.follow(poll=0.02):
                seen.append(message)
                if message["t"] == "stats" and message["totals"]["calls"] >= 500 and job.poll() is None:
                    os.kill(job.pid, signal.SIGKILL)
                    job.wait(10)
            assert not recording.live
        assert sum(len(m["rows"]) for m in seen if m["t"] == "calls") >= 500
    finally:
        if job.poll() is None:
            job.kill()


def test_a_forked_child_lets_go_of_its_parents_recording(tmp_path):
    job = ServedJob(tmp_path / "parent.dtop")
    job.calls(100)
    pid = os.fork()
    if pid == 0:  # the child: what the after-fork hook will do, then exit at once
        job.writer.abandon_after_fork()
        job.writer.add({"t": "stats", "at": 1.0})  # ignored: the child never writes the parent's file
        os._exit(0 if job.writer._fd is None else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with Recording(job.writer.path) as recording:
        assert recording.live  # the parent's descriptor still holds the lock
    job.calls(100)
    job.close()
    with Recording(job.writer.path) as recording:
        assert events_of(recording.messages()) == job.sent and recording.damage == []


def test_the_recording_package_imports_nothing_heavy():
    """The writer runs in the user's job and the reader in the viewer: standard library, msgpack, platformdirs."""
    code = (
        "import sys, dspy_top.recording, dspy_top.recording.summary; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dspy', 'litellm', 'textual', 'openai'}), "
        "'dspy_top.model' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] False"


# --- bounds, privacy, the runs directory ---------------------------------------------------------


def test_past_the_cap_payloads_stop_and_the_counts_go_on(tmp_path):
    job = ServedJob(tmp_path / "capped.dtop", cap_bytes=20_000)
    job.calls(3000, per_tick=100)
    job.close()
    with Recording(job.writer.path) as recording:
        end = recording.end_state()
        assert end.stats["totals"]["calls"] == 3000
        assert 0 < end.state.payloads < 3000 and end.state.payloads + end.state.payloads_dropped == 3000
        notes = {note["event"]: note for note in end.state.notes}
        assert "payloads stop" in notes["payload_cap"]["message"]
        assert "event_cap" in notes  # twice the cap: call events stop too, stats are thinned
        assert end.state.calls_dropped > 0
        assert end.state.calls + end.state.calls_dropped == 3000
        notes_in_stream = [m for m in recording.messages() if m["t"] == "recording"]
        assert [n["event"] for n in notes_in_stream] == ["payload_cap", "event_cap"]
    assert job.writer.path.stat().st_size < 3 * 20_000


def test_a_burst_between_two_flushes_stops_at_the_cap(tmp_path):
    # 480 payloads within one tick (a fast job: the file's size is known only after the write):
    # what waits for the flush counts toward the cap, or the burst would all go in.
    job = ServedJob(tmp_path / "burst.dtop", cap_bytes=16 * 1024)
    job.calls(480, per_tick=1000)
    job.close()
    with Recording(job.writer.path) as recording:
        end = recording.end_state()
        assert end.stats["totals"]["calls"] == 480
        assert 0 < end.state.payloads < 480 and end.state.payloads + end.state.payloads_dropped == 480
        assert [n["event"] for n in end.state.notes][:1] == ["payload_cap"]
    assert job.writer.path.stat().st_size < 3 * 16 * 1024


def test_recordings_are_private_and_named_for_their_run(tmp_path, monkeypatch):
    monkeypatch.setenv("DSPY_TOP_STATE_DIR", str(tmp_path / "state"))
    directory = runs.runs_dir(create=True)
    assert directory == tmp_path / "state" / "runs"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    started = time.mktime((2026, 3, 4, 5, 6, 7, 0, 0, -1))
    path = runs.default_path(["/home/me/optimize.py", "--x"], pid=77, started_at=started)
    assert path == directory / "20260304-050607-77-optimize.dtop"
    assert runs.default_path(["-m", "my.pkg"], pid=1, started_at=started).name.endswith("-1-my.pkg.dtop")
    assert runs.default_path([], pid=1, started_at=started).name.endswith("-1-python.dtop")
    assert runs.default_path(["x y/../$evil"], pid=1, started_at=started).parent == directory
    old_umask = os.umask(0)
    try:
        writer = RecordingWriter.create(path, {"t": "hello", "pid": 77})
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        RecordingWriter.create(path, {"t": "hello"})
    writer.close()


def test_retention_keeps_the_newest_and_never_removes_one_in_use(tmp_path):
    directory = tmp_path / "runs"
    directory.mkdir()
    paths = []
    for n in range(6):
        job = ServedJob(directory / f"run-{n}.dtop")
        job.calls(200)
        if n != 1:
            job.close()
        os.utime(job.writer.path, (1_000_000 + n, 1_000_000 + n))
        paths.append(job.writer.path)
    size = paths[0].stat().st_size
    removed = runs.prune(directory, keep_bytes=int(size * 2.5))
    # Newest first: 5 and 4 fit; 1 is still being written; 3, 2 and 0 go.
    assert sorted(removed) == sorted([paths[3], paths[2], paths[0]])
    assert sorted(runs.recordings(directory)) == sorted([paths[5], paths[4], paths[1]])
    with Recording(paths[4]):  # a reader holds it: kept even past the budget
        assert runs.prune(directory, keep_bytes=1) == []
    assert runs.prune(directory, keep_bytes=1) == [paths[4]]  # the newest (5) stays; 1 is in use


def test_list_runs_summarizes_each_recording_newest_first(tmp_path):
    directory = tmp_path / "runs"
    directory.mkdir()
    first = recorded(directory, name="a.dtop", calls=100)
    os.utime(first.writer.path, (1_000_000, 1_000_000))
    clock = FakeClock()
    clock.now += 3600
    second = recorded(directory, name="b.dtop", calls=50, close=False, clock=clock)
    second.writer.flush(force=True)  # its last tick came less than WRITE_AFTER after the write before
    (directory / "junk.dtop").write_text("not a recording")
    summaries, errors = list_runs(directory)
    assert [s.path.name for s in summaries] == ["b.dtop", "a.dtop"]
    assert [s.state for s in summaries] == ["live", "complete"]
    assert summaries[1].calls == 100 + 120 and summaries[0].calls == 50 + 120
    assert [str(e).split(":")[0] for e in errors] == [str(directory / "junk.dtop")]
    assert summaries[0].to_json()["best_score"] == 60.0
    second.close()
