"""A healthy viewer beside stalled ones: does it keep up, and does the job notice?

    python benchmarks/stalled_viewers.py                 # 0, 20, 50 and 100 stalled viewers
    python benchmarks/stalled_viewers.py --stalled 0,100 --calls 40000 --repeats 3
    python benchmarks/stalled_viewers.py --server-cpu    # the server thread alone, to the nanosecond

For each number of stalled viewers (sockets that connect and never read), a fresh job
process makes `--calls` LM calls as fast as it can (`dspy.Predict` over a fixed-answer LM,
as in overhead.py) while one healthy viewer, in its own process, reads everything as the
viewer does. Reported per row (medians over repeats): the job's time per call, the share of
call events the healthy viewer received, its `dropped_viewer`, the CPU time of the job's
server thread per 1,000 calls (what the stalled viewers cost it), and whether every viewer
(the stalled ones read only after the job ended) got the exit frame with the exact total.
Only the standard library and dspy-top's client on the viewer side, so the same script runs
against any version of the job side.

`--server-cpu` measures the server thread alone, in this process: the real server and
recorder, one healthy viewer draining a socket, N stalled ones, rounds of 500 calls fed to
the recorder as the hooks feed it; the thread's CPU time from its `schedstat` (Linux).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

HEALTHY = """
import json, sys
from dspy_top import client
connection = client.Connection(sys.argv[1], batches=True)
connection.connect()
print("attached", flush=True)
calls, dropped, total, ended = 0, 0, None, False
for message in connection.events():
    if message["t"] == "calls":
        calls += len(message["rows"])
    elif message["t"] == "snapshot":
        calls += len(message["calls"])
    elif message["t"] in ("stats", "exit"):
        stats = message if message["t"] == "stats" else message["stats"]
        dropped = stats.get("dropped_viewer", 0) + stats.get("dropped_events", 0)
        total = stats["totals"]["calls"]
        ended = ended or message["t"] == "exit"
print(json.dumps({"calls": calls, "dropped": dropped, "total": total, "exit": ended}), flush=True)
"""


def job_worker(calls: int) -> None:
    """The job: instrumented, `calls` LM calls once told to go, then waits to be told to exit."""
    import dspy
    from overhead import fixed_lm

    import dspy_top

    handle = dspy_top.instrument()
    dspy.configure(lm=fixed_lm())
    program = dspy.Predict("question -> answer")
    program(question="warm up")
    print("READY", handle.socket_path, flush=True)
    sys.stdin.readline()
    server_thread = handle.server._thread.native_id
    cpu_before = thread_cpu(server_thread)
    started = time.perf_counter()
    for number in range(calls):
        program(question=f"q {number}")
    elapsed = time.perf_counter() - started
    time.sleep(0.6)  # the server's last ticks
    server_ms = (thread_cpu(server_thread) - cpu_before) * 1000
    print(
        "DONE",
        json.dumps(
            {"us_per_call": elapsed / calls * 1e6, "calls": calls + 1, "server_ms_per_1000": server_ms / calls * 1000}
        ),
        flush=True,
    )
    sys.stdin.readline()


def thread_cpu(native_id: int) -> float:
    """CPU seconds one thread of this process has used (Linux)."""
    with open(f"/proc/self/task/{native_id}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_cpu(stalled: int, rounds: int = 100) -> float:
    """CPU µs of the server thread per call event, in this process."""
    import threading

    from dspy_top import protocol
    from dspy_top.instrumentation.recorder import Recorder
    from dspy_top.instrumentation.server import SocketServer

    os.environ["DSPY_TOP_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="dtsv", dir="/tmp")
    os.environ["DSPY_TOP_MAX_VIEWERS"] = str(stalled + 8)
    recorder = Recorder(queue_capacity=100_000)
    server = SocketServer(
        recorder, hello=lambda: {"t": "hello", "v": protocol.PROTOCOL_VERSION, "pid": os.getpid()}, materialize=dict
    )
    server.start()
    sockets = []
    for _ in range(stalled + 1):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(server.path))
        sockets.append(sock)
    healthy = sockets.pop()

    def drain():
        try:
            while healthy.recv(1 << 20):
                pass
        except OSError:  # closed at the end
            pass

    threading.Thread(target=drain, daemon=True).start()
    time.sleep(1.0)
    task = f"/proc/self/task/{server._thread.native_id}/schedstat"

    def cpu() -> float:
        with open(task) as stat:
            return int(stat.read().split()[0]) / 1e9

    before = cpu()
    for _ in range(rounds):
        for _ in range(500):
            record = recorder.begin("Pipeline.check.predict", "Predict", ("Pipeline", "Predict"), "openai/gpt-4o-mini")
            recorder.finish(record, prompt_tokens=120, completion_tokens=12, response_model="gpt-4o-mini-2024-07-18")
        time.sleep(0.1)
    time.sleep(0.6)
    spent = cpu() - before
    server.stop()
    for sock in sockets + [healthy]:
        sock.close()
    return spent / (rounds * 500) * 1e6


def read_to_end(sock: socket.socket, deadline: float) -> dict:
    from dspy_top import protocol

    reader = protocol.FrameReader()
    calls, final = 0, None
    sock.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 20)
        except TimeoutError:
            continue
        except OSError:
            break
        if not data:
            break
        for message in reader.feed(data):
            if message["t"] == "calls":
                calls += len(message["rows"])
            elif message["t"] == "snapshot":
                calls += len(message["calls"])
            elif message["t"] == "exit":
                final = message["stats"]
    return {"calls": calls, "final": final}


def one_run(stalled: int, calls: int) -> dict:
    runtime = tempfile.mkdtemp(prefix="dtsv", dir="/tmp")
    env = {**os.environ, "DSPY_TOP_RUNTIME_DIR": runtime, "DSPY_TOP_MAX_VIEWERS": str(stalled + 8)}
    env.pop("DSPY_TOP", None)
    here = os.path.dirname(os.path.abspath(__file__))
    job = subprocess.Popen(
        [sys.executable, os.path.join(here, "stalled_viewers.py"), "--worker", str(calls)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=here,
    )
    try:
        path = job.stdout.readline().split()[1]
        sockets = []
        for _ in range(stalled):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path)
            sockets.append(sock)
        healthy = subprocess.Popen([sys.executable, "-c", HEALTHY, path], stdout=subprocess.PIPE, text=True, env=env)
        assert healthy.stdout.readline().strip() == "attached"
        job.stdin.write("go\n")
        job.stdin.flush()
        done = json.loads(job.stdout.readline().split(" ", 1)[1])
        job.stdin.write("exit\n")
        job.stdin.flush()
        job.wait(60)
        seen = json.loads(healthy.stdout.readline())
        healthy.wait(60)
        deadline = time.monotonic() + 60
        finals = [read_to_end(sock, deadline) for sock in sockets]
        for sock in sockets:
            sock.close()
    finally:
        job.kill()
    total = done["calls"]
    exact = [
        f["final"] is not None
        and f["final"]["totals"]["calls"] == total
        and f["calls"] + f["final"].get("dropped_viewer", 0) + f["final"].get("dropped_events", 0) == total
        for f in finals
    ]
    return {
        "us_per_call": done["us_per_call"],
        "server_ms": done["server_ms_per_1000"],
        "received": seen["calls"] / total,
        "dropped": seen["dropped"],
        "healthy_exit": seen["exit"] and seen["total"] == total,
        "stalled_exact": sum(exact),
        "stalled": stalled,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stalled", default="0,20,50,100", help="numbers of stalled viewers, comma-separated")
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--server-cpu", action="store_true", help="measure the server thread alone, in this process")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        job_worker(args.worker)
        return
    if args.server_cpu:
        print("| stalled viewers | server thread CPU µs per call event |\n|---:|---:|")
        for stalled in [int(n) for n in args.stalled.split(",")]:
            runs = [server_cpu(stalled) for _ in range(args.repeats)]
            print(f"| {stalled} | {statistics.median(runs):.2f} |", flush=True)
        return
    print(f"{args.calls:,} calls (`dspy.Predict`, fixed-answer LM); medians of {args.repeats} run(s)\n")
    print(
        "| stalled viewers | job µs/call | server thread CPU ms per 1,000 calls | healthy viewer received "
        "| its dropped | healthy got exit | stalled ones with exit and exact counts |"
    )
    print("|---:|---:|---:|---:|---:|---|---:|")
    for stalled in [int(n) for n in args.stalled.split(",")]:
        runs = [one_run(stalled, args.calls) for _ in range(args.repeats)]
        print(
            f"| {stalled} | {statistics.median(r['us_per_call'] for r in runs):.0f} "
            f"| {statistics.median(r['server_ms'] for r in runs):.1f} "
            f"| {statistics.median(r['received'] for r in runs):.1%} "
            f"| {statistics.median(r['dropped'] for r in runs):,.0f} "
            f"| {'yes' if all(r['healthy_exit'] for r in runs) else 'no'} "
            f"| {min(r['stalled_exact'] for r in runs)} of {stalled} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
