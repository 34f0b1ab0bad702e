"""How much the viewer takes in and what it costs: ingest rate while refreshing on time, idle CPU,
time to first frame, memory after 1,000,000 events.

    python benchmarks/viewer.py              # everything (about a minute)
    python benchmarks/viewer.py ingest       # one part: ingest | ingest-app | idle | first-frame | memory | fold

Fake instrumented processes (separate OS processes speaking the real wire protocol) feed a
real `Collector` + `Fleet`; the viewer side refreshes from `fleet.snapshot()` every second,
as the app does. Idle CPU and first frame run the real `dspy-top` in tmux. Results are
printed as a table and as JSON (last line).
"""

from __future__ import annotations

import compileall
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dspy_top import protocol  # noqa: E402
from dspy_top.model import Fleet  # noqa: E402
from dspy_top.sources.collector import Collector  # noqa: E402
from dspy_top.sources.local import local_sockets  # noqa: E402

MODULES = ["RAG.generate_query.predict", "RAG.answer", "Judge", "Summarize.predict"]


def _counters(calls: int) -> dict:
    return {
        "calls": calls,
        "errors": 0,
        "retries": 0,
        "cache_hits": calls // 10,
        "prompt_tokens": 800 * calls,
        "completion_tokens": 60 * calls,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 0.0003 * calls,
        "unpriced_calls": 0,
        "cost_saved_usd": 0.0,
        "latency_s": 0.8 * calls,
        "in_flight": 4,
        "latency_hist": {16: calls // 2, 20: calls - calls // 2},
        "last_at": time.time(),
    }


def _stats(calls: int) -> dict:
    per_module = calls // len(MODULES)
    return {
        "t": "stats",
        "at": time.time(),
        "totals": _counters(calls),
        "modules": [
            {"path": path, "class": "Predict", "chain": path.split("."), **_counters(per_module)} for path in MODULES
        ],
        "models": [{"model": "openai/gpt-4o-mini", **_counters(calls)}],
        "scopes": [],
        "dropped_events": 0,
        "dropped_viewer": 0,
        "internal_errors": 0,
        "tool_calls": 0,
        "tool_errors": 0,
    }


def _call_rows(start: float, sent: int, count: int) -> list[tuple]:
    """`count` call events in `protocol.CALL_FIELDS` order, numbered after the `sent` before them."""
    return [
        (
            n,
            n,
            start + n * 1e-5,
            0.8,
            MODULES[n % len(MODULES)],
            "Predict",
            "openai/gpt-4o-mini",
            "gpt-4o-mini",
            800,
            60,
            0,
            0,
            0.0003,
            None,
            False,
            0,
            None,
            None,
            (),
            False,
            True,
        )
        for n in range(sent + 1, sent + count + 1)
    ]


def fake_process(directory: str, events: int, idle_seconds: float = 0.0) -> None:
    """Serve one viewer: hello, snapshot, then `events` call events (with stats frames), then exit."""
    pid = os.getpid()
    path = Path(directory) / f"{pid}.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    conn, _ = listener.accept()
    conn.sendall(
        protocol.encode(
            {
                "t": "hello",
                "v": protocol.PROTOCOL_VERSION,
                "pid": pid,
                "ppid": 1,
                "argv": ["fake-job.py"],
                "cwd": "/",
                "started_at": time.time(),
                "python": "3",
                "dspy": "3.4.1",
                "dspy_top": "0.1.0",
                "mechanism": "execution-hooks",
                "history_capacity": 1000,
            }
        )
    )
    conn.sendall(protocol.encode({"t": "snapshot", "seq": 0, "calls": [], "stats": _stats(0)}))
    sent = 0
    start = time.time()
    fields = protocol.CALL_FIELDS
    while sent < events:
        # Like a real process: each drain of its queue goes out as `calls` frames of up to 500.
        frames = []
        for _ in range(2):
            rows = _call_rows(start, sent, min(500, events - sent))
            sent += len(rows)
            if rows:
                frames.append(protocol.encode({"t": "calls", "fields": fields, "rows": rows}))
        frames.append(protocol.encode(_stats(sent)))
        conn.sendall(b"".join(frames))
    deadline = time.time() + idle_seconds
    while time.time() < deadline:  # idle: a heartbeat every 2 s, like a quiet job
        conn.sendall(protocol.encode(_stats(sent)))
        time.sleep(min(2.0, max(0.0, deadline - time.time())))
    conn.sendall(protocol.encode({"t": "exit", "at": time.time(), "stats": _stats(sent)}))
    time.sleep(0.2)
    conn.close()
    listener.close()
    path.unlink()


def fold(total_events: int = 300_000, repeats: int = 5) -> dict:
    """The viewer's per-event cost without sockets: decode, check and fold `calls` and `stats` frames.

    The same frames as `fake_process` sends, through `FrameReader` and `Fleet.fold_many` in this
    process; the best of `repeats` runs (this machine is shared), so small changes show.
    """
    from dspy_top.protocol import Hello

    start = time.time()
    frames = bytearray()
    sent = 0
    while sent < total_events:
        rows = _call_rows(start, sent, min(500, total_events - sent))
        sent += len(rows)
        frames += protocol.encode({"t": "calls", "fields": protocol.CALL_FIELDS, "rows": rows})
        if sent % 1000 == 0:
            frames += protocol.encode(_stats(sent))
    best = float("inf")
    for _ in range(repeats):
        fleet = Fleet()
        fleet.attach("bench", 1)
        fleet.connected(
            "bench",
            Hello(
                version=protocol.PROTOCOL_VERSION,
                pid=1,
                argv=["fake-job.py"],
                cwd="/",
                started_at=start,
                python="3",
                dspy="3",
                dspy_top="0",
                mechanism="x",
                history_capacity=1000,
            ),
        )
        t0 = time.perf_counter()
        messages = protocol.FrameReader().feed(bytes(frames))
        for at in range(0, len(messages), 2):  # about the collector's fold chunk (1,000 events)
            fleet.fold_many("bench", messages[at : at + 2])
        best = min(best, time.perf_counter() - t0)
    return {
        "events": fleet.events,
        "best_seconds": round(best, 3),
        "events_per_sec": round(fleet.events / best),
        "us_per_event": round(best / fleet.events * 1e6, 2),
    }


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ingest(total_events: int = 600_000, processes: int = 3, delay: float = 1.0) -> dict:
    """Events/s folded by one Collector while a 1 s refresh loop snapshots the fleet."""
    directory = tempfile.mkdtemp(prefix="dtb", dir="/tmp")
    rss_before = rss_mib()
    fleet = Fleet()
    collector = Collector(fleet, [local_sockets(directory=Path(directory), rescan_every=0.2)]).start()
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=fake_process, args=(directory, total_events // processes)) for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    began = time.monotonic()
    lateness: list[float] = []
    snapshot_ms: list[float] = []
    next_tick = began + delay
    first_event_at = None
    while True:
        time.sleep(max(0.0, next_tick - time.monotonic()))
        woke = time.monotonic()
        lateness.append(woke - next_tick)
        t0 = time.perf_counter()
        with fleet.lock:
            snapshot = fleet.snapshot(history_limit=500)
        snapshot_ms.append((time.perf_counter() - t0) * 1000)
        if first_event_at is None and fleet.events:
            first_event_at = woke - delay
        next_tick += delay
        done = snapshot.processes and all(p.state in ("ended", "lost") for p in snapshot.processes)
        if done and len(snapshot.processes) == processes:
            break
        if woke - began > 120:
            break
    elapsed = time.monotonic() - began
    for worker in workers:
        worker.join(5)
    events = fleet.events
    collector.stop()
    shutil.rmtree(directory, ignore_errors=True)
    calls = snapshot.totals.calls
    return {
        "events": events,
        "processes": processes,
        "seconds": round(elapsed, 2),
        "events_per_sec": round(events / elapsed),
        "calls_in_totals": calls,
        "refresh_late_p_max_ms": round(max(lateness) * 1000, 1),
        "snapshot_ms_max": round(max(snapshot_ms), 1),
        "snapshot_ms_mean": round(sum(snapshot_ms) / len(snapshot_ms), 1),
        "history_held": snapshot.history_size,
        "rss_mib_growth": round(rss_mib() - rss_before, 1),
    }


def ingest_app(total_events: int = 600_000, processes: int = 3) -> dict:
    """The same load into the real Textual app (headless, 120x40): events/s and how regular the refresh is."""
    import asyncio

    from dspy_top.viewer.app import TopApp

    directory = tempfile.mkdtemp(prefix="dtb", dir="/tmp")
    fleet = Fleet()
    collector = Collector(fleet, [local_sockets(directory=Path(directory), rescan_every=0.2)])
    frames: list[tuple[float, float]] = []  # (when, how long apply took)

    class TimedApp(TopApp):
        def apply(self, snapshot):
            t0 = time.perf_counter()
            super().apply(snapshot)
            frames.append((time.monotonic(), time.perf_counter() - t0))

    app = TimedApp(fleet, collector, delay=1.0)
    context = multiprocessing.get_context("fork")
    workers = [
        context.Process(target=fake_process, args=(directory, total_events // processes)) for _ in range(processes)
    ]

    async def drive():
        async with app.run_test(size=(120, 40)) as pilot:
            for worker in workers:
                worker.start()
            began = time.monotonic()
            while time.monotonic() - began < 120:
                await pilot.pause(0.2)
                with fleet.lock:
                    states = [p.state for p in fleet.processes.values()]
                if len(states) == processes and all(s in ("ended", "lost") for s in states):
                    break
            return time.monotonic() - began

    cpu_before = _process_cpu()
    elapsed = asyncio.run(drive())
    cpu = round(_process_cpu() - cpu_before, 2)
    for worker in workers:
        worker.join(5)
    shutil.rmtree(directory, ignore_errors=True)
    steady = [t for t, _ in frames[2:]]
    gaps = [b - a for a, b in zip(steady, steady[1:])]
    return {
        "events": fleet.events,
        "seconds": round(elapsed, 2),
        "events_per_sec": round(fleet.events / elapsed),
        "refreshes": len(frames),
        "refresh_gap_max_s": round(max(gaps), 3) if gaps else None,
        "apply_ms_max": round(max(d for _, d in frames) * 1000, 1),
        "apply_ms_mean": round(sum(d for _, d in frames) / len(frames) * 1000, 1),
        "viewer_cpu_s": cpu,
    }


def _process_cpu() -> float:
    """CPU seconds used by this process so far (every thread, ended ones included)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def memory(events: int = 1_000_000) -> dict:
    """RSS of the viewer side after folding a million events through the real socket path."""
    result = ingest(total_events=events, processes=2)
    return {
        "events": result["events"],
        "rss_mib": round(rss_mib(), 1),
        "rss_growth_mib": result["rss_mib_growth"],
        "history_held": result["history_held"],
    }


def _tmux(server: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", server, *args], capture_output=True, text=True, timeout=10).stdout


def _viewer_in_tmux(directory: str, server: str, cpu: list[float] | None = None) -> float:
    """Start dspy-top in tmux; return seconds from launch to its first frame on screen.

    With `cpu`, the viewer's CPU seconds at that moment are appended to it: on a shared machine
    the wall time says more about the neighbours, the CPU time what a quiet machine would take."""
    command = f"cd {REPO} && unset COLUMNS LINES && DSPY_TOP_RUNTIME_DIR={directory} exec {sys.executable} -m dspy_top"
    started = time.monotonic()
    _tmux(server, "new-session", "-d", "-s", "v", "-x", "120", "-y", "40", command)
    while time.monotonic() - started < 20:
        if "dspy-top" in _tmux(server, "capture-pane", "-p", "-t", "v"):
            seen = time.monotonic() - started
            if cpu is not None:
                pid = int(_tmux(server, "display", "-p", "-t", "v", "#{pane_pid}").strip())
                cpu.append(_cpu_seconds(pid))
            return seen
        time.sleep(0.005)
    raise TimeoutError("no first frame")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def first_frame(runs: int = 3) -> dict:
    # As installed: pip compiles the package's bytecode, so measure with it compiled (an environment
    # with PYTHONDONTWRITEBYTECODE would otherwise compile every module of dspy-top on every start).
    compileall.compile_dir(str(REPO / "dspy_top"), quiet=1)
    times: list[float] = []
    cpu: list[float] = []
    for index in range(runs):
        directory = tempfile.mkdtemp(prefix="dtb", dir="/tmp")
        server = f"dtbench-{os.getpid()}-{index}"
        try:
            times.append(_viewer_in_tmux(directory, server, cpu))
        finally:
            _tmux(server, "kill-server")
            shutil.rmtree(directory, ignore_errors=True)
    return {
        "first_frame_s_median": round(sorted(times)[len(times) // 2], 3),
        "runs": [round(t, 3) for t in times],
        "cpu_s_median": round(sorted(cpu)[len(cpu) // 2], 3),
        "cpu_runs": [round(c, 3) for c in cpu],
    }


def idle(seconds: float = 20.0) -> dict:
    """CPU share of one core used by a viewer attached to a quiet process (heartbeats only)."""
    directory = tempfile.mkdtemp(prefix="dtb", dir="/tmp")
    server = f"dtbench-idle-{os.getpid()}"
    worker = multiprocessing.get_context("fork").Process(target=fake_process, args=(directory, 2000, seconds + 8))
    worker.start()
    try:
        _viewer_in_tmux(directory, server)
        pid = int(_tmux(server, "display", "-p", "-t", "v", "#{pane_pid}").strip())
        time.sleep(3)  # attached, the snapshot folded, the first refreshes done
        cpu0, t0 = _cpu_seconds(pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = _cpu_seconds(pid), time.monotonic()
        return {"idle_cpu_percent_of_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 2), "seconds": round(t1 - t0, 1)}
    finally:
        _tmux(server, "kill-server")
        worker.kill()
        worker.join(5)
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str]) -> int:
    parts = argv or ["ingest", "ingest-app", "idle", "first-frame", "memory", "fold"]
    results: dict[str, dict] = {}
    for part in parts:
        if part == "ingest":
            results["ingest"] = ingest()
        elif part == "ingest-app":
            results["ingest_app"] = ingest_app()
        elif part == "memory":
            results["memory"] = memory()
        elif part == "first-frame":
            results["first_frame"] = first_frame(runs=int(os.environ.get("DSPY_TOP_BENCH_RUNS", "3")))
        elif part == "idle":
            results["idle"] = idle()
        elif part == "fold":
            results["fold"] = fold()
        else:
            print(f"unknown part {part!r}", file=sys.stderr)
            return 2
        for key, value in results[part.replace("-", "_")].items():
            print(f"{part:12} {key:28} {value}")
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
