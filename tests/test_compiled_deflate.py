"""The compiled deflate (issue 16: recording's cost to the job): a recording compressed off the GIL.

dspy_top/recording/_deflate.c compresses each of a recording's streams on a thread of its own, so
a job's server thread no longer lets the GIL go around each zlib call (segments.py says why). Here
its streams decode to exactly what was fed, across flushes, finished segments and records of every
bytes-like kind; what it holds is held unchanged until compressed and let go after; it never makes
the caller wait unless asked to; a forked child is refused, never hung; its thread ends with it;
and a writer's file reads back the same with it and with Python's zlib. The build (hatch_build.py)
makes it with the machine's compiler (tests/test_compiled_packer.py: what it says when it cannot).
"""

from __future__ import annotations

import gc
import importlib.util
import os
import random
import sys
import time
import zlib
from pathlib import Path

import pytest

from dspy_top.recording import segments
from dspy_top.recording.writer import RecordingWriter
from tests.helpers.line_jobs import REPO
from tests.helpers.recorded import everything

sys.path.insert(0, str(REPO))
import hatch_build  # noqa: E402  (the build hook, at the repository's root)

pytestmark = pytest.mark.timeout(120)


def needs_native():
    if not segments.NATIVE:
        pytest.skip("the compiled deflate is not built here (no C compiler or zlib header at install)")
    return segments._deflate


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


def records(rng: random.Random, count: int) -> list:
    """DSPy-like text, repeated wording and fresh numbers, as bytes, bytearrays and memoryview slices."""
    out = []
    for i in range(count):
        text = (f"[[ ## question ## ]]\nWhat is {rng.randrange(10**9)}?\n" * rng.randrange(1, 6)).encode()
        text += rng.randbytes(rng.randrange(0, 200))
        kind = i % 3
        if kind == 0:
            out.append(text)
        elif kind == 1:
            out.append(bytearray(text))
        else:
            whole = bytearray(b"<" + text + b">")
            out.append(memoryview(whole)[1:-1])
    return out


def test_the_streams_decode_to_what_was_fed_across_flushes_and_segments():
    deflate = needs_native()
    rng = random.Random(7)
    for level in (1, 6):
        stream = deflate.Deflater(level)
        segments_out: list[tuple[bytes, bytes]] = []
        fed = bytearray()
        compressed = bytearray()
        for round_ in range(40):
            batch = records(rng, rng.randrange(0, 30))
            stream.feed(batch)
            fed += b"".join(bytes(record) for record in batch)
            end = round_ % 7 == 6
            if rng.random() < 0.5:
                stream.flush(end)  # asked first, taken later: the writer's order
            taken = stream.take(end, True)
            assert stream.crc() == zlib.crc32(taken)  # the frame's checksum, reckoned off the GIL
            compressed += taken
            if end:
                segments_out.append((bytes(fed), bytes(compressed)))
                fed, compressed = bytearray(), bytearray()
        assert len(segments_out) == 5
        for raw, packed in segments_out:
            decoder = zlib.decompressobj(-15)
            assert decoder.decompress(packed) == raw
            assert decoder.eof  # each segment a whole deflate stream, decodable on its own
        # A sync flush leaves the stream open and everything before it decodable.
        stream.feed([b"open"])
        assert zlib.decompressobj(-15).decompress(stream.take(False, True)) == b"open"


def test_where_no_thread_can_start_the_waits_compress_the_same_stream():
    deflate = needs_native()
    before = threads()
    stream = deflate.Deflater(6, threaded=False)
    records = [f"record {i} ".encode() * 50 for i in range(500)]
    stream.feed(records)
    assert threads() == before  # none started
    assert stream.take(False, False) is None  # nothing done until a wait
    first = stream.take(False, True)
    stream.feed([b"tail"])
    stream.settle()
    assert stream.counts()[0] == 0  # a settle compresses what is held
    decoder = zlib.decompressobj(-15)
    assert decoder.decompress(first + stream.take(True, True)) == b"".join(records) + b"tail" and decoder.eof


def test_take_without_waiting_never_blocks_and_a_flush_asked_stands():
    deflate = needs_native()
    stream = deflate.Deflater(6)
    data = random.Random(3).randbytes(4 * 2**20)  # seconds of level 6 on incompressible bytes
    stream.feed([data])
    started = time.perf_counter()
    assert stream.take(True, False) is None  # not done: None at once
    assert time.perf_counter() - started < 0.05
    stream.feed([b"after the finish"])  # fed after the flush asked for: the next stream's
    first = stream.take(False, True)  # the flush asked (end) stands
    decoder = zlib.decompressobj(-15)
    assert decoder.decompress(first) == data and decoder.eof
    assert zlib.decompress(stream.take(True, True), -15) == b"after the finish"


def test_what_it_holds_is_let_go_once_compressed():
    deflate = needs_native()
    stream = deflate.Deflater(1)
    held = bytearray(b"x" * 100_000)
    stream.feed([memoryview(held)[10:]])
    with pytest.raises(BufferError):
        held.extend(b"y")  # exported to the compressing thread: nobody may change it meanwhile
    stream.take(False, True)
    held.extend(b"y")  # let go at the take
    backlog, out, fed, per_byte = stream.counts()
    assert backlog == 0 and out == 0 and fed == 99_990 and per_byte > 0


def test_its_thread_starts_at_the_first_record_and_ends_with_it():
    deflate = needs_native()
    before = threads()
    stream = deflate.Deflater(1)
    assert threads() == before  # none until there is something to compress
    stream.feed([b"abc"])
    assert threads() == before + 1
    stream.take(True, True)
    del stream
    gc.collect()
    assert threads() == before


def test_a_forked_child_is_refused_never_hung(tmp_path):
    deflate = needs_native()
    stream = deflate.Deflater(1)
    stream.feed([b"x" * 1_000_000])  # the worker may be mid-record, its lock held, at the fork
    pid = os.fork()
    if pid == 0:  # the child: no worker thread here
        code = 1
        try:
            try:
                stream.feed([b"more"])
            except RuntimeError as exc:
                code = 0 if "after a fork" in str(exc) else 2
            for call in (lambda: stream.take(True, True), stream.settle, stream.counts):
                try:
                    call()
                    code = 3
                except RuntimeError:
                    pass
            del stream  # left as it is: no join of a thread the child does not have
            gc.collect()
        finally:
            os._exit(code)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    else:
        os.kill(pid, 9)
        pytest.fail("the forked child hung on the parent's compressor")
    assert os.waitstatus_to_exitcode(status) == 0
    assert zlib.decompress(stream.take(True, True), -15) == b"x" * 1_000_000  # the parent's goes on


def write_and_read(tmp_path: Path, native: bool) -> tuple[list, dict]:
    """A writer fed calls, stats and payloads over several flushes and segments; what a reader finds."""
    writer = RecordingWriter.create(tmp_path / f"{native}.dtop", {"t": "hello", "pid": 1, "argv": ["job"]})
    for stream in (writer._messages, writer._payloads):
        assert (stream.native is not None) == native
    rng = random.Random(11)
    call_id = 0
    fields = ["id", "t0", "module", "model", "prompt_tokens", "completion_tokens"]
    for _flush in range(12):
        rows = []
        for _ in range(200):
            call_id += 1
            rows.append([call_id, 1.0 + call_id, "Solver.predict", "openai/x", 10, 5])
            writer.add_payload(call_id, {"messages": [{"role": "user", "content": rng.randbytes(300).hex()}]})
        writer.add({"t": "calls", "fields": fields, "rows": rows})
        writer.flush(force=True)
    writer.close({"t": "exit", "code": 0})
    messages, payloads = everything(writer.path)
    return [message for message in messages if message.get("t") != "stats"], payloads


def test_a_recording_reads_back_the_same_with_it_and_with_pythons_zlib(tmp_path, monkeypatch):
    needs_native()
    native = write_and_read(tmp_path, True)
    monkeypatch.setattr(segments, "NATIVE", False)
    monkeypatch.setattr(segments.SegmentedStream.__init__, "__defaults__", (False,))
    python = write_and_read(tmp_path, False)
    assert native == python
    assert sorted(native[1]) == list(range(1, 2401))
    assert all(payload is not None and len(payload["messages"][0]["content"]) == 600 for payload in native[1].values())


def test_the_build_makes_an_importable_deflate(tmp_path):
    built = hatch_build.compile_extension(REPO, tmp_path, 1)
    if built is None:
        pytest.skip("no C compiler, Python headers or zlib header on this machine")
    assert built.parent == tmp_path and built.name.startswith("_deflate.")
    spec = importlib.util.spec_from_file_location("_deflate", built)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stream = module.Deflater(1)
    stream.feed([b"hello " * 100])
    assert zlib.decompress(stream.take(True, True), -15) == b"hello " * 100


def test_the_compiled_deflate_is_built_where_ci_runs():
    """CI installs zlib's header (.ci/run): there, a missing build is a failure."""
    if not os.environ.get("CI"):
        pytest.skip("outside CI the compiled part is optional")
    assert segments.NATIVE, "the compiled deflate was not built (see hatch_build.py's message)"


def test_a_stream_fed_past_its_bound_waits_for_the_compressing_thread():
    """Fed faster than its thread compresses (a thread starved of CPU), a stream holds at most
    BACKLOG_MOST bytes not compressed: past it, the feeding waits (the GIL let go, said to the
    caller's `released`)."""
    needs_native()
    from dspy_top.recording import frames

    stream = segments.SegmentedStream(frames.PAYLOADS, 6)
    waits: list[float] = []

    def released(expected: float):
        waits.append(expected)
        return segments.held()

    stream.released = released
    data = random.Random(5).randbytes(segments.BACKLOG_MOST + 2**20)  # level 6, incompressible: seconds
    stream.pending, stream.pending_bytes = [data], len(data)
    stream.compress_pending()
    assert waits and waits[0] > 0  # it waited, having said for how long
    assert stream.native.counts()[0] == 0  # nothing left held: all compressed
    decoder = zlib.decompressobj(-15)
    assert decoder.decompress(stream.take(True)) == data and decoder.eof
