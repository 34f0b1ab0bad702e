"""The recording file: payload size against its text, metadata per call, the writer's CPU per call,
and a 1,000,000-call recording opened, searched, read whole and exported, with the reader's
memory; and what recording costs a real DSPy job per LM call (`wired`).

    python benchmarks/recording.py                     # everything (a few minutes; ~1 GB of temp files)
    python benchmarks/recording.py corpus metadata     # parts: corpus | redaction | metadata | writer | big | wired
    python benchmarks/recording.py big --calls 200000  # a smaller big file
    python benchmarks/recording.py wired --rounds 20   # the job's cost, in fresh processes, round by round
    python benchmarks/recording.py wired --rounds 24 --wired-scenarios pipeline-eval   # one scenario

Payloads are real DSPy payloads: the demo's programs (Predict and ChainOfThought, with and
without BootstrapFewShot's demos, and the ReAct pipeline) run against the simulated LM and
materialized as the job does (`demo`), and ChainOfThought RAG prompts formatted by DSPy's
ChatAdapter with three passages each of natural text and a natural-text answer, nothing
repeated but the adapter's wording (`rag`, the hard case). Metadata comes from the real
Recorder, drained, counted and flushed as the server thread does on its 0.25 s tick. Every
reading figure is taken in a fresh interpreter that imports only dspy_top.recording.

`wired` runs a real DSPy program (benchmarks/overhead.py's `predict` and `pipeline-eval`:
a fixed-answer LM, so the job is all CPU and every microsecond the recording takes from it
shows) instrumented without a viewer, recording or not, each in a fresh process, the two
interleaved round by round (every other round backwards); each process times all its calls
and waits until its recording has taken the last of them. The recording's cost is the
difference, round by round (median, 95% bootstrap interval), beside the server thread's CPU
in the recording (its take and tick), split into what zlib took (the GIL released) and the
rest (the GIL held; where the compiled deflate runs, zlib runs on threads of its own,
`compressing_threads_us`, and the server thread holds the GIL throughout), and the time the
job's threads spent letting the GIL go for the server thread's turns (`giving_us`,
instrumentation/gil_handoff.py; `predict` only, one job thread): most of what the job waits
for, and far less noisy than the difference of two processes' wall times. Results are printed as
lines and as JSON (last line).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import msgpack  # noqa: E402

from dspy_top.recording import frames  # noqa: E402

TICK = 0.25  # the server's tick: one drain, one flush
PATHS = ("Solver.plan", "Solver.solve.predict", "WarehouseQA.react.react", "WarehouseQA.react.extract.predict", "Judge")


def _worker(*args: str, timeout: float = 1800) -> dict:
    """Run this file's `--worker` in a fresh interpreter; its last line of output is JSON."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, __file__, "--worker", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=REPO,
    )
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{result.stderr[-4000:]}")
    # The whole process, from the interpreter's start to its exit: what a user would wait.
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "process_s": round(elapsed, 3)}


# --- corpora (in a worker: they import dspy) ------------------------------------------------------


def build_demo_corpus(out: Path, count: int) -> dict:
    """Payloads of the demo's real programs against the simulated LM, as payload.materialize builds them."""
    import dspy

    import dspy_top
    from dspy_top.demos import rag_react
    from dspy_top.demos.common import answer_is_correct, arithmetic_examples
    from dspy_top.demos.optimize import Solver
    from dspy_top.instrumentation.payload import materialize
    from dspy_top.simlm import SimLM

    handle = dspy_top.instrument(history=count + 1000, serve=False)
    sim = SimLM(latency_scale=0.0).start()
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    dspy.configure(lm=dspy.LM("openai/gpt-4o-mini", api_base=sim.base_url, api_key="sim", cache=False))
    questions = arithmetic_examples(count, seed=20)
    compiled = dspy.BootstrapFewShot(metric=answer_is_correct, max_bootstrapped_demos=4, max_labeled_demos=4).compile(
        Solver(), trainset=arithmetic_examples(24, seed=10)
    )
    plain, qa = Solver(), rag_react.WarehouseQA()
    warehouse = rag_react.warehouse_questions(max(1, count // 10))
    recorder = handle.recorder
    made = 0
    while len(recorder.payload_ring.payloads) < count:
        example = questions[made % len(questions)]
        try:
            (compiled, plain)[made % 2](question=example.question)
            if made % 5 == 0:
                qa(question=warehouse[made % len(warehouse)].question)
        except Exception:
            pass
        made += 1
        recorder.fold()
    payloads = [materialize(recorder.payload(call_id)) for call_id in sorted(recorder.payload_ring.payloads)[:count]]
    out.write_bytes(msgpack.packb(payloads, use_bin_type=True, default=repr))
    sim.stop()
    return {"payloads": len(payloads)}


def build_rag_corpus(out: Path, count: int) -> dict:
    """ChainOfThought RAG prompts in DSPy's ChatAdapter format, each with three passages of
    natural text (Python's own documentation) and a natural-text answer: little repeats but the adapter's text."""
    import importlib
    import pydoc

    import dspy

    modules = [
        "os",
        "json",
        "collections",
        "itertools",
        "functools",
        "asyncio",
        "email",
        "http.client",
        "urllib.request",
        "logging",
        "argparse",
        "pathlib",
        "re",
        "typing",
        "subprocess",
        "threading",
        "socket",
        "ssl",
        "decimal",
        "fractions",
        "statistics",
        "random",
        "string",
        "textwrap",
        "difflib",
        "csv",
        "sqlite3",
        "zipfile",
        "tarfile",
        "shutil",
        "tempfile",
        "datetime",
        "calendar",
        "heapq",
        "bisect",
        "inspect",
        "ast",
        "pickle",
        "copy",
        "pprint",
        "enum",
        "dataclasses",
        "contextlib",
        "abc",
        "io",
        "unittest",
        "doctest",
        "configparser",
        "optparse",
        "smtplib",
        "xml.dom.minidom",
        "tkinter",
    ]
    passages = []
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for attribute in dir(module):
            if attribute.startswith("_"):
                continue
            doc = pydoc.getdoc(getattr(module, attribute, None)) or ""
            # Split long docs into paragraph-sized passages, as a retriever's chunks are.
            for start in range(0, len(doc), 700):
                piece = doc[start : start + 700]
                if len(piece) > 200:
                    passages.append(piece)
    passages = list(dict.fromkeys(passages))
    draw = random.Random(7)
    signature = dspy.ChainOfThought("context: list[str], question -> answer").predict.signature
    adapter = dspy.ChatAdapter()
    payloads = []
    for number in range(count):
        context = draw.sample(passages, 3)
        question = f"Using the passages, how would I {draw.choice(passages)[:90].strip()}? (case {number})"
        reasoning, answer = draw.choice(passages), draw.choice(passages)[:240]
        reply = f"[[ ## reasoning ## ]]\n{reasoning}\n\n[[ ## answer ## ]]\n{answer}\n\n[[ ## completed ## ]]"
        payloads.append(
            {
                "model": "openai/gpt-4o-mini",
                "model_type": "chat",
                "messages": adapter.format(signature, [], {"context": context, "question": question}),
                "options": {"temperature": 0.0, "max_tokens": 4000, "api_key": "[redacted]"},
                "outputs": [reply],
                "usage": {"prompt_tokens": 700 + number % 300, "completion_tokens": 180, "total_tokens": 900},
                "cost_usd": 0.0002,
                "cache_hit": False,
                "response_model": "gpt-4o-mini-2024-07-18",
            }
        )
    out.write_bytes(msgpack.packb(payloads, use_bin_type=True))
    return {"payloads": len(payloads), "passages": len(passages)}


def load_corpus(path: Path) -> list[dict]:
    return msgpack.unpackb(path.read_bytes(), raw=False, strict_map_key=False)


def text_size(payload: dict) -> int:
    """A payload's size as text: its JSON, UTF-8 (what `export --payloads` writes)."""
    return len(json.dumps(payload, ensure_ascii=False).encode())


# --- a realistic stream --------------------------------------------------------------------------


class Job:
    """A real Recorder driven like a busy DSPy job on a simulated clock, served to a writer tick by tick."""

    def __init__(self, writer_path: Path, rate: float, payloads: list[dict] | None, seed: int = 1) -> None:
        from dspy_top.instrumentation.recorder import Recorder
        from dspy_top.recording import RecordingWriter

        self.clock = _Clock()
        self.recorder = Recorder(history_capacity=1000, queue_capacity=10_000_000, clock=self.clock, perf=self.clock)
        hello = {
            "t": "hello",
            "v": 2,
            "pid": 4242,
            "ppid": 1,
            "argv": ["optimize.py"],
            "cwd": "/work",
            "started_at": self.clock(),
            "history_capacity": 1000,
            "python": "3.11",
            "dspy": "3.4.1",
            "dspy_top": "0.1.0",
            "mechanism": "execution-hooks",
        }
        self.writer = RecordingWriter.create(writer_path, hello, clock=self.clock)
        self.rate = rate
        self.payloads = payloads
        self.draw = random.Random(seed)
        self.calls = 0
        self.feed_cpu = 0.0  # the writer's CPU time taking messages and payloads
        self.flush_cpu = 0.0  # its CPU time in flush()
        _count_compression()
        self.compression_at_start = COMPRESSION["cpu"]
        # The compiled deflate's threads end with the writer: their CPU is the process's less this
        # thread's (the only Python thread here).
        self.process_at_start, self.thread_at_start = time.process_time(), time.thread_time()
        self.writer.add({"t": "snapshot", **self.recorder.snapshot()})
        self.trial = 0
        self.recorder.scope_start(
            "compile",
            "compile-1",
            {
                "class": "MIPROv2",
                "parent": None,
                "params": {"auto": "light"},
                "arguments": {"num_trials": 10},
                "trainset": 200,
                "valset": 100,
                "predictors": 2,
            },
        )
        self._next_trial()

    def run(self, calls: int) -> None:
        draw, recorder, payloads = self.draw, self.recorder, self.payloads
        ticks = 0
        trial_at = self.calls
        while self.calls < calls:
            if self.calls - trial_at >= 2000:
                self._next_trial()
                trial_at = self.calls
            scopes = ("compile-1", f"eval-{self.trial}")
            # A rate below one call per tick leaves some ticks without a call.
            due = int((ticks + 1) * self.rate * TICK) - int(ticks * self.rate * TICK)
            batch = min(due, calls - self.calls)
            kept: list[tuple[int, dict]] = []  # the tick's payloads, handed over as the server will, per drain
            for _ in range(batch):
                path = PATHS[draw.randrange(len(PATHS))]
                record = recorder.begin(
                    path, "Predict", tuple(path.split(".")[:-1]) or (path,), "openai/gpt-4o-mini", scopes=scopes
                )
                hit = draw.random() < 0.1
                recorder.finish(
                    record,
                    prompt_tokens=0 if hit else draw.randint(300, 2000),
                    completion_tokens=0 if hit else draw.randint(20, 300),
                    cost=draw.random() * 1e-3,
                    cache_hit=hit,
                    saved=1e-4 if hit else None,
                    error=RuntimeError("rate limited") if draw.random() < 0.01 else None,
                )
                if payloads:
                    kept.append((record.id, payloads[self.calls % len(payloads)]))
                self.calls += 1
            self.clock.now += TICK
            ticks += 1
            recorder.eval_progress(scopes[1], self.calls % 2000 // 20, self.calls % 2000 / 40)
            events = recorder.drain()
            started = time.thread_time()
            self.writer.add_events(events)
            self.writer.add_payloads(kept)
            feed = time.thread_time() - started
            if ticks % 2 == 0:  # stats every 0.5 s, as the server sends them
                stats = {"t": "stats", **recorder.stats()}
                started = time.thread_time()
                self.writer.add(stats)
                feed += time.thread_time() - started
            started = time.thread_time()
            self.writer.flush()
            self.flush_cpu += time.thread_time() - started
            self.feed_cpu += feed

    def cpu(self) -> dict:
        """The writer's CPU per call: in all, inside zlib (GIL released), and the rest (GIL held)."""
        total = self.feed_cpu + self.flush_cpu
        zlib_cpu = COMPRESSION["cpu"] - self.compression_at_start
        from dspy_top.recording import segments

        if segments.NATIVE:  # compressed on threads of its own: the writer's thread holds the GIL throughout
            zlib_cpu = (time.process_time() - self.process_at_start) - (time.thread_time() - self.thread_at_start)
            total += zlib_cpu
        return {
            "writer_us_per_call": round(total / self.calls * 1e6, 2),
            "zlib_us_per_call": round(zlib_cpu / self.calls * 1e6, 2),
            "gil_held_us_per_call": round((total - zlib_cpu) / self.calls * 1e6, 2),
        }

    def _next_trial(self) -> None:
        if self.trial:
            self.recorder.scope_end(f"eval-{self.trial}", {"score": 40.0 + self.draw.random() * 40})
        self.trial += 1
        self.recorder.scope_start(
            "eval",
            f"eval-{self.trial}",
            {
                "parent": "compile-1",
                "total": 100,
                "done": 0,
                "score_sum": 0.0,
                "program": "Solver",
                "metadata": {"metric_key": "eval_full"},
            },
        )

    def close(self) -> None:
        self.recorder.scope_end(f"eval-{self.trial}", {"score": 61.0})
        self.recorder.scope_end("compile-1", {})
        self.writer.add_events(self.recorder.drain())
        self.writer.close({"t": "exit", "at": self.clock(), "stats": self.recorder.stats()})


COMPRESSION = {"cpu": 0.0, "depth": 0}  # the writer's CPU time inside zlib (which releases the GIL)


def compressing_threads_cpu() -> float:
    """CPU seconds of the threads Python did not start: the compiled deflate's, one a stream
    (dspy_top/recording/_deflate.c), read from each thread's CPU clock (Linux)."""
    import threading

    python = {thread.native_id for thread in threading.enumerate()}
    total = 0.0
    for name in os.listdir("/proc/self/task"):
        tid = int(name)
        if tid in python:
            continue
        try:  # the thread's CPU clock: MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)
            total += time.clock_gettime((~tid << 3) | 6)
        except OSError:  # it ended meanwhile
            pass
    return total


def _count_compression() -> None:
    """Wrap the writer's two calls into zlib, so its GIL-held work can be told from compression.
    Where the compiled deflate runs, compressing is on threads of its own (`compressing_threads_cpu`):
    what the writer's thread spends is all GIL-held, nothing to wrap."""
    from dspy_top.recording import segments
    from dspy_top.recording.segments import SegmentedStream

    stream = SegmentedStream
    if getattr(stream, "_timed", False) or segments.NATIVE:
        return
    compress, take = stream.compress_pending, stream.take

    def timed(function):
        def wrapper(*args, **kwargs):
            started = time.thread_time()
            COMPRESSION["depth"] += 1
            try:
                return function(*args, **kwargs)
            finally:
                COMPRESSION["depth"] -= 1
                if not COMPRESSION["depth"]:  # take() calls compress_pending(): count once
                    COMPRESSION["cpu"] += time.thread_time() - started

        return wrapper

    stream.compress_pending, stream.take, stream._timed = timed(compress), timed(take), True


class _Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def bytes_by_kind(path: Path) -> dict[str, int]:
    """How many bytes of the file each kind of frame takes (headers included)."""
    from dspy_top.recording.reader import Recording

    totals: dict[str, int] = {}
    with Recording(path) as recording:
        view = recording._view
        start = frames.FILE_HEADER.size
        for found in view.walk(start):
            name = frames.KIND_NAMES.get(found.kind, "?")
            totals[name] = totals.get(name, 0) + found.end - found.offset
        totals["file"] = recording.size
    return totals


# --- parts ---------------------------------------------------------------------------------------


def corpus(directory: Path, count: int = 1500) -> dict:
    """Payload bytes in the file as a share of their text, per corpus, per deflate level and rate."""
    from dspy_top.recording import writer as writer_module

    results = {}
    for name in ("demo", "rag"):
        path = directory / f"{name}.msgpack"
        if not path.exists():
            _worker(f"corpus-{name}", str(path), str(count))
        payloads = load_corpus(path)
        text = sum(text_size(p) for p in payloads)
        packed = sum(len(msgpack.packb(p, use_bin_type=True)) for p in payloads)
        row = {
            "payloads": len(payloads),
            "text_bytes_per_payload": round(text / len(payloads)),
            "msgpack_share_of_text": round(packed / text, 3),
        }
        for level in (1, 6):
            for rate in (10, 1000):  # calls per second: a tick holds 2 or 250 payloads
                writer_module.PAYLOADS_LEVEL = level
                file = directory / f"{name}-{level}-{rate}.dtop"
                file.unlink(missing_ok=True)
                job = Job(file, rate, payloads)
                job.run(len(payloads))
                job.close()
                stored = bytes_by_kind(file).get("payloads", 0)
                row[f"level{level}_rate{rate}_share"] = round(stored / text, 4)
                row[f"level{level}_rate{rate}_zlib_us"] = job.cpu()["zlib_us_per_call"]
                file.unlink()
        writer_module.PAYLOADS_LEVEL = 1
        results[name] = row
        print(f"corpus {name}: {row}", flush=True)
    return results


def metadata(directory: Path, calls: int = 100_000) -> dict:
    """Bytes of everything but payloads, per call, at several call rates."""
    results = {}
    for rate in (1, 10, 100, 1000):
        file = directory / f"meta-{rate}.dtop"
        file.unlink(missing_ok=True)
        job = Job(file, rate, None)
        job.run(calls if rate >= 100 else calls // 10 if rate >= 10 else calls // 50)
        job.close()
        kinds = bytes_by_kind(file)
        per_call = (kinds["file"] - kinds.get("payloads", 0)) / job.calls
        results[f"rate{rate}"] = {
            "calls": job.calls,
            "bytes_per_call": round(per_call, 1),
            "by_kind": kinds,
            **job.cpu(),
        }
        print(f"metadata at {rate} calls/s: {per_call:.1f} bytes per call ({kinds})", flush=True)
        file.unlink()
    return results


def writer_cpu(directory: Path, calls: int = 50_000) -> dict:
    """The writer's CPU per call on the server thread, with payloads: feeding (GIL held) and flushing."""
    results = {}
    for name in ("demo", "rag"):
        payloads = load_corpus(directory / f"{name}.msgpack")
        for rate in (100, 1000):
            file = directory / f"cpu-{name}.dtop"
            file.unlink(missing_ok=True)
            job = Job(file, rate, payloads)
            job.run(calls)
            job.close()
            row = job.cpu()
            results[f"{name}_rate{rate}"] = row
            print(f"writer cpu, {name} payloads at {rate} calls/s: {row}", flush=True)
            file.unlink()
    return results


def big(directory: Path, calls: int, keep: bool) -> dict:
    """Write a recording of `calls` calls with demo payloads, then open, search and read it in fresh interpreters."""
    file = directory / "big.dtop"
    file.unlink(missing_ok=True)
    payloads = load_corpus(directory / "demo.msgpack")
    started = time.perf_counter()
    job = Job(file, 1200, payloads)
    job.run(calls)
    job.close()
    written = time.perf_counter() - started
    kinds = bytes_by_kind(file)
    print(f"big: {calls:,} calls written in {written:.0f} s: {kinds['file'] / 2**20:.0f} MiB ({kinds})", flush=True)
    # The same file as SIGKILL leaves it: no footer, the last frame torn.
    cut = directory / "big-killed.dtop"
    with open(file, "rb") as source, open(cut, "wb") as target:
        from dspy_top.recording.reader import Recording

        with Recording(file) as recording:
            last = recording.index().checkpoints[-1].offset  # the final checkpoint, the index and trailer go
        shutil.copyfileobj(source, target)
        target.truncate(last - 100)
    results = {
        "calls": calls,
        "write_s": round(written, 1),
        "bytes": kinds,
        "metadata_bytes_per_call": round((kinds["file"] - kinds.get("payloads", 0)) / calls, 1),
    }
    for part in ("first", "end", "end-killed", "seek", "payloads", "read", "export", "export-csv"):
        target = cut if part == "end-killed" else file
        results[part] = _worker(part if part.startswith("export") else part.split("-")[0], str(target))
        print(f"big {part}: {results[part]}", flush=True)
    if not keep:
        file.unlink()
        cut.unlink()
    return results


# --- the wired path: a real DSPy job, recording or not ---------------------------------------------

WIRED_MODES = ("unwatched", "recording")


def wired(rounds: int, calls: int, scenarios: tuple[str, ...] = ("predict", "pipeline-eval")) -> dict:
    """The recording's cost on a real job, per LM call, in fresh processes interleaved round by round."""
    samples: dict[tuple[str, str], list[dict]] = {}
    for number in range(rounds):
        for scenario in scenarios:
            modes = WIRED_MODES if number % 2 == 0 else WIRED_MODES[::-1]
            for mode in modes:
                samples.setdefault((scenario, mode), []).append(_worker("wired", scenario, mode, str(calls)))
        print(f"wired: round {number + 1} of {rounds}", flush=True)
    results = {}
    for scenario in scenarios:
        plain, recorded = samples[(scenario, "unwatched")], samples[(scenario, "recording")]
        diffs = [r["wall_us"] - p["wall_us"] for p, r in zip(plain, recorded)]
        cpu_diffs = [r["cpu_us"] - p["cpu_us"] for p, r in zip(plain, recorded)]
        row = {
            "rounds": rounds,
            "calls": recorded[0]["calls"],
            "unwatched_us": _median(p["wall_us"] for p in plain),
            "recording_us": _median(r["wall_us"] for r in recorded),
            "difference_us": _median(diffs),
            "difference_ci": _interval(diffs),
            "process_cpu_difference_us": _median(cpu_diffs),
            "process_cpu_difference_ci": _interval(cpu_diffs),
            "recording_thread_us": _median(r["thread_us"] for r in recorded),
            "recording_zlib_us": _median(r["zlib_us"] for r in recorded),
            "compressing_threads_us": _median(r["compressing_threads_us"] for r in recorded),
            "recording_gil_held_us": _median(r["thread_us"] - r["zlib_us"] for r in recorded),
            # what the job's threads wait for the server thread's turns, per call (low in noise:
            # the server's own work decides it), recording and not
            "giving_us": _median(r["giving_us"] for r in recorded) if scenario == "predict" else None,
            "giving_unwatched_us": _median(p["giving_us"] for p in plain) if scenario == "predict" else None,
            "given_per_1000_calls": _median(r["given_per_1000"] for r in recorded),
            "bytes_per_call": _median(r["bytes"] / r["calls"] for r in recorded),
            "payloads_dropped": sum(r["dropped"] for r in recorded),
        }
        results[scenario] = row
        print(f"wired {scenario}: {row}", flush=True)
    return results


def wired_worker(scenario: str, mode: str, calls: int) -> dict:
    import gc

    sys.path.insert(0, str(REPO / "benchmarks"))
    import dspy
    import overhead

    import dspy_top
    from dspy_top.instrumentation import recording as job_recording

    directory = tempfile.mkdtemp(prefix="dtop-wired-")
    spent = {"thread": 0.0}

    def timed(function):
        def wrapper(*args, **kwargs):
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                spent["thread"] += time.thread_time() - started

        return wrapper

    # Timed before instrument() starts the server thread, which may join the recording (and take
    # its methods as taps) at once.
    job_recording.JobRecording.take = timed(job_recording.JobRecording.take)
    job_recording.JobRecording.tick = timed(job_recording.JobRecording.tick)
    _count_compression()
    handle = dspy_top.instrument(record=f"{directory}/" if mode == "recording" else False)
    dspy.configure(lm=overhead.fixed_lm())
    program = overhead.build_program(scenario)
    per_run = 2 if scenario.startswith("pipeline") else 1
    runs = calls // per_run

    def run(count: int, offset: int) -> None:
        if scenario == "pipeline-eval":
            for start in range(0, count, 500):
                examples = [
                    dspy.Example(question=f"q {offset + start + i}").with_inputs("question")
                    for i in range(min(500, count - start))
                ]
                dspy.Evaluate(devset=examples, metric=lambda e, p, t=None: 1.0, num_threads=8, display_progress=False)(
                    program
                )
        else:
            for i in range(count):
                program(question=f"q {offset + i}")

    run(200, 0)
    recording = handle.recording
    if recording is not None:
        recording.opened.wait(5)

    def taken() -> int:
        state = recording.writer.state
        return state.payloads + state.payloads_dropped

    settled = taken() if recording is not None else 0
    gc.collect()
    thread_before, zlib_before = spent["thread"], COMPRESSION["cpu"]
    native_before = compressing_threads_cpu()
    handoff = handle.recorder.handoff
    given, waited = handoff.given, handoff.waited
    cpu, started = time.process_time(), time.perf_counter()
    run(runs, 1000)
    if recording is not None:  # its last calls' work counts too: a tick now, not at its next turn
        while taken() < settled + runs * per_run:
            handle.server.push_totals(timeout=5.0)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    done = runs * per_run
    size = recording.path.stat().st_size if recording is not None else 0
    dropped = recording.writer.state.payloads_dropped if recording is not None else 0
    shutil.rmtree(directory, ignore_errors=True)
    return {
        "calls": done,
        "wall_us": wall / done * 1e6,
        "cpu_us": cpu / done * 1e6,
        "thread_us": (spent["thread"] - thread_before) / done * 1e6,
        "zlib_us": (COMPRESSION["cpu"] - zlib_before) / done * 1e6,  # on the server thread, the GIL let go
        "compressing_threads_us": (compressing_threads_cpu() - native_before) / done * 1e6,
        # The job's threads letting the GIL go for the server thread (gil_handoff.py): how often,
        # and how long they waited for it to come and go.
        # (With many threads a thread's wait also holds the other job threads' turns: not counted.)
        "given_per_1000": (handoff.given - given) / done * 1000,
        "giving_us": (handoff.waited - waited) / done * 1e6 if scenario == "predict" else None,
        "bytes": size,
        "dropped": dropped,
    }


def _median(values) -> float:
    values = sorted(values)
    return round(
        values[len(values) // 2] if len(values) % 2 else (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2,
        2,
    )


def _interval(samples: list[float], rounds: int = 2000) -> list[float]:
    """A 95% bootstrap interval of the median."""
    draw = random.Random(1)
    medians = sorted(_median(draw.choice(samples) for _ in samples) for _ in range(rounds))
    return [medians[int(0.025 * rounds)], medians[int(0.975 * rounds)]]


# --- reading, in a fresh interpreter -------------------------------------------------------------


def read_worker(part: str, path: str) -> dict:
    from dspy_top.recording import Recording

    imported = time.perf_counter()
    out: dict = {}
    recording = Recording(path)
    if part == "first":
        first = next(recording.messages())
        out["first_message_s"] = round(time.perf_counter() - imported, 4)
        out["first_type"] = first["t"]
    elif part == "end":
        end = recording.end_state()
        out["end_state_s"] = round(time.perf_counter() - imported, 3)
        out["calls"] = end.totals["calls"]  # the latest stats and the calls after it
        out["complete"] = end.complete
        out["damage"] = [str(d) for d in end.damage]
    elif part == "seek":
        position = recording.seek(fraction=0.5)
        messages = recording.messages(position, history=10_000)
        snapshot = next(messages)
        following = next(messages)
        out["seek_s"] = round(time.perf_counter() - imported, 3)
        out["history"] = len(snapshot["calls"])
        out["next_type"] = following["t"]
    elif part == "payloads":
        index = recording.index()
        last = max(s.last_id for s in index.payloads if s.last_id is not None)
        ids = random.Random(3).sample(range(1, last + 1), 50)
        times = []
        for call_id in ids:
            started = time.perf_counter()
            assert recording.payload(call_id) is not None, call_id
            times.append(time.perf_counter() - started)
        times.sort()
        out["payload_ms_median"] = round(times[len(times) // 2] * 1e3, 1)
        out["payload_ms_max"] = round(times[-1] * 1e3, 1)
    elif part == "read":
        calls = 0
        for message in recording.messages():
            if message["t"] == "calls":
                calls += len(message["rows"])
        out["read_s"] = round(time.perf_counter() - imported, 2)
        out["calls"] = calls
    elif part in ("export", "export-csv"):  # `dspy-top export FILE [--format csv] -o OUT`, its own code
        from dspy_top.recording import export

        target = Path(path).with_suffix(".csv" if part == "export-csv" else ".jsonl")
        with open(target, "w", encoding="utf-8", newline="") as handle:
            writer = (export.Csv if part == "export-csv" else export.JsonLines)(handle)
            rows = export.CallRows(recording, export.trial_numbers(recording))
            calls = 0
            for columns in rows.batches():
                writer.write(columns)
                calls += len(columns["call_id"])
        out[f"{part.replace('-', '_')}_s"] = round(time.perf_counter() - imported, 2)
        out["calls"] = calls
        out["bytes"] = target.stat().st_size
        target.unlink()
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def peak_rss_mib() -> float:
    """This process's peak resident memory. Not ru_maxrss: a child started by fork and exec keeps
    the parent's peak in it; the kernel's high-water mark is reset by exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def redaction(directory: Path, count: int = 1500) -> dict:
    """The redaction pass over each corpus's payloads in turn, as a recording job's one redactor
    meets them (what it remembers from the payloads before included), in a fresh interpreter."""
    results = {}
    for name in ("demo", "rag"):
        path = directory / f"{name}.msgpack"
        if not path.exists():
            _worker(f"corpus-{name}", str(path), str(count))
        results[name] = row = _worker("redaction", str(path))
        print(f"redaction {name}: {row}", flush=True)
    return results


def redaction_worker(path: str) -> dict:
    from dspy_top.instrumentation.redact import MAX_STRING, Redactor

    payloads = load_corpus(Path(path))
    redactor = Redactor({})
    times = []
    for payload in payloads:
        started = time.perf_counter()
        redactor.value({"payload": payload}, MAX_STRING)
        times.append(time.perf_counter() - started)
    later = sorted(times[len(times) // 10 :])  # past the first tenth: what a running job pays
    return {
        "payloads": len(payloads),
        "median_us": round(later[len(later) // 2] * 1e6, 1),
        "mean_us": round(sum(later) / len(later) * 1e6, 1),
        "first_tenth_mean_us": round(sum(times[: len(times) // 10]) / (len(times) // 10) * 1e6, 1),
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        part, *rest = argv[1:]
        if part == "redaction":
            result = redaction_worker(rest[0])
        elif part == "corpus-demo":
            result = build_demo_corpus(Path(rest[0]), int(rest[1]))
        elif part == "corpus-rag":
            result = build_rag_corpus(Path(rest[0]), int(rest[1]))
        elif part == "wired":
            result = wired_worker(rest[0], rest[1], int(rest[2]))
        else:
            result = read_worker(part, rest[0])
        print(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("parts", nargs="*", default=["corpus", "metadata", "writer", "big", "wired"])
    parser.add_argument("--calls", type=int, default=1_000_000, help="calls in the big recording")
    parser.add_argument("--rounds", type=int, default=20, help="wired: fresh-process rounds")
    parser.add_argument("--wired-calls", type=int, default=4000, help="wired: LM calls each process times")
    parser.add_argument(
        "--wired-scenarios",
        default="predict,pipeline-eval",
        help="wired: the scenarios, comma-separated (predict, pipeline-eval)",
    )
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the files")
    args = parser.parse_args(argv)
    directory = args.dir or Path(tempfile.mkdtemp(prefix="dtop-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    results = {}
    try:
        if "corpus" in args.parts or any(p in args.parts for p in ("writer", "big")):
            results["corpus"] = corpus(directory)
        if "redaction" in args.parts:
            results["redaction"] = redaction(directory)
        if "metadata" in args.parts:
            results["metadata"] = metadata(directory)
        if "writer" in args.parts:
            results["writer"] = writer_cpu(directory)
        if "big" in args.parts:
            results["big"] = big(directory, args.calls, args.keep)
        if "wired" in args.parts:
            scenarios = tuple(name for name in args.wired_scenarios.split(",") if name)
            unknown = set(scenarios) - {"predict", "pipeline-eval"}
            if unknown or not scenarios:
                named = ", ".join(sorted(unknown)) or "none"
                parser.error(f"--wired-scenarios: predict and/or pipeline-eval, not {named}")
            results["wired"] = wired(args.rounds, args.wired_calls, scenarios)
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
