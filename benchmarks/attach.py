"""`dspy-top attach`: how long it takes, how long the job stops, and what it costs the job afterwards.

    python benchmarks/attach.py              # 10 attach/detach rounds and 12 overhead rounds (about 2 minutes)
    python benchmarks/attach.py --quick      # 3 and 3

Two jobs, each started without dspy-top (it runs the job script below in a fresh process):

1. Speed and pause. A job with 8 threads calling the simulated LM (about 30-40 ms a call) and one
   thread ticking every millisecond, recording the longest gap it sees (the pause the job
   feels). Each round runs `dspy-top attach PID` as a user would and times it (start to exit 0,
   the socket served), then `dspy-top -b -n 1 --json -p PID` (start of the attach to the first
   numbers), reads the ticker's longest gap since just before the attach, and detaches.
2. Overhead after the attach. One job times blocks of 1,000 sequential `dspy.Predict` calls over
   a fixed-answer LM (no network), in the calling thread's CPU time (wall time on a shared
   machine mostly measures the neighbours; it is kept in the JSON), round by round in
   alternating order: plain; attached with `dspy-top attach` (once what it watches after the
   attach has settled); instrumented with `dspy_top.instrument()` in the same process (after a
   detach). Reported: the median µs per call of each, and the median round-by-round
   differences attached − instrument() and instrument() − plain.

The last line of output is JSON with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

JOB = r"""
import json, os, sys, threading, time
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
import dspy
mode = sys.argv[1]
gap = [0.0]

def tick():
    last = time.perf_counter()
    while True:
        time.sleep(0.001)
        now = time.perf_counter()
        gap[0] = max(gap[0], now - last)
        last = now

if mode == "busy":
    dspy.configure(lm=dspy.LM("openai/gpt-4o-mini", api_base=os.environ["SIM_URL"], api_key="sim", cache=False))
    program = dspy.ChainOfThought("question -> answer")
    def work(i):
        n = 0
        while True:
            program(question=f"What is {i} + {n}?")
            n += 1
    for i in range(8):
        threading.Thread(target=work, args=(i,), daemon=True).start()
    threading.Thread(target=tick, daemon=True).start()
else:
    from dspy.utils.dummies import DummyLM
    dspy.configure(lm=DummyLM([{"answer": "4"}] * 1_000_000))
    program = dspy.Predict("question -> answer")
    for _ in range(200):
        program(question="What is 2 + 2?")  # warm up
handle = None

def commands():
    # On its own thread: the main thread waits on a lock meanwhile, which an attach interrupts
    # (a main thread blocked in read() would run the attach only once it returns).
    global handle
    for line in sys.stdin:
        words = line.split()
        if words[0] == "gap":
            print("GAP", gap[0], flush=True)
            gap[0] = 0.0
        elif words[0] == "block":
            # CPU time of this thread: on a shared machine, wall time mostly measures the neighbours.
            started, cpu = time.perf_counter(), time.thread_time()
            for _ in range(int(words[1])):
                program(question="What is 2 + 2?")
            count = int(words[1])
            print("BLOCK", (time.thread_time() - cpu) / count, (time.perf_counter() - started) / count, flush=True)
        elif words[0] == "instrument":
            import dspy_top
            handle = dspy_top.instrument(serve=False)
            print("OK", flush=True)
        elif words[0] == "close":
            from dspy_top.instrumentation import runtime
            handle.close()
            runtime._active = None
            print("OK", flush=True)

reader = threading.Thread(target=commands, daemon=True)
reader.start()
print("READY", os.getpid(), flush=True)
reader.join()
"""


class Job:
    def __init__(self, mode: str, env: dict) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", JOB, mode],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd="/tmp",
        )
        self.pid = int(self.expect("READY").split()[1])

    def expect(self, word: str) -> str:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the job ended before {word}")
            if line.startswith(word):
                return line.strip()

    def ask(self, command: str, answer: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.expect(answer)

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def dspy_top(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dspy_top", *args], capture_output=True, text=True, env=env, timeout=120, cwd=str(REPO)
    )


def speed_and_pause(rounds: int, env: dict) -> dict:
    from dspy_top.simlm import SimLM

    out = {"attach_s": [], "first_numbers_s": [], "pause_ms": [], "detach_s": []}
    with SimLM(latency_scale=0.1) as sim:
        job = Job("busy", {**env, "SIM_URL": sim.base_url})
        try:
            time.sleep(2.0)
            for _ in range(rounds):
                job.ask("gap", "GAP")
                started = time.perf_counter()
                attached = dspy_top("attach", str(job.pid), env=env)
                out["attach_s"].append(time.perf_counter() - started)
                assert attached.returncode == 0, attached.stderr
                batch = dspy_top("-b", "-n", "1", "--json", "-p", str(job.pid), env=env)
                snapshot = json.loads(batch.stdout.splitlines()[-1])
                assert snapshot["totals"]["calls"] > 0
                out["first_numbers_s"].append(time.perf_counter() - started)
                out["pause_ms"].append(1000 * float(job.ask("gap", "GAP").split()[1]))
                started = time.perf_counter()
                detached = dspy_top("detach", str(job.pid), env=env)
                assert detached.returncode == 0, detached.stderr
                out["detach_s"].append(time.perf_counter() - started)
                time.sleep(0.5)
            job.ask("gap", "GAP")
            time.sleep(3.0)
            out["pause_ms_unattached_3s"] = 1000 * float(job.ask("gap", "GAP").split()[1])
        finally:
            job.close()
    return out


def overhead(rounds: int, env: dict, calls: int = 1000) -> dict:
    from dspy_top.attach.session import attach, detach

    job = Job("predict", env)
    out: dict = {"plain_us": [], "attached_us": [], "instrument_us": []}
    try:
        for index in range(rounds):
            order = ["plain", "attached", "instrument"]
            if index % 2:
                order.reverse()
            for mode in order:
                if mode == "attached":
                    attach(job.pid)
                    time.sleep(1.2)  # the attach watcher has settled and gone
                elif mode == "instrument":
                    job.ask("instrument", "OK")
                cpu, wall = (float(v) for v in job.ask(f"block {calls}", "BLOCK").split()[1:])
                out[f"{mode}_us"].append(1e6 * cpu)
                out.setdefault(f"{mode}_wall_us", []).append(1e6 * wall)
                if mode == "attached":
                    detach(job.pid)
                elif mode == "instrument":
                    job.ask("close", "OK")
    finally:
        job.close()
    out["attached_minus_instrument_us"] = [a - i for a, i in zip(out["attached_us"], out["instrument_us"])]
    out["instrument_minus_plain_us"] = [i - p for i, p in zip(out["instrument_us"], out["plain_us"])]
    return out


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 rounds of each")
    parser.add_argument("--only", choices=("speed", "overhead"), help="run one part")
    args = parser.parse_args()
    runtime = Path(tempfile.mkdtemp(prefix="dt", dir="/tmp"))
    env = {
        **os.environ,
        "DSPY_TOP_RUNTIME_DIR": str(runtime),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "DSPY_CACHEDIR": str(runtime / "cache"),
    }
    env.pop("DSPY_TOP", None)
    env.pop("PYTHONPATH", None)
    speed = speed_and_pause(3 if args.quick else 10, env) if args.only != "overhead" else {}
    cost = overhead(3 if args.quick else 12, env) if args.only != "speed" else {}
    print("| what | median | max |\n|---|---|---|")
    rows = [
        ("attach_s", "`dspy-top attach PID` until exit 0 (socket served), s", speed),
        ("first_numbers_s", "attach start to first numbers in `dspy-top -b -n 1 --json`, s", speed),
        ("pause_ms", "longest pause a 1 ms ticker in the job saw during the attach, ms", speed),
        ("detach_s", "`dspy-top detach PID`, s", speed),
        ("plain_us", "CPU µs per Predict call, plain", cost),
        ("attached_us", "CPU µs per call, attached", cost),
        ("instrument_us", "CPU µs per call, instrument()", cost),
        ("instrument_minus_plain_us", "instrument() − plain, round by round, µs", cost),
        ("attached_minus_instrument_us", "attached − instrument(), round by round, µs", cost),
    ]
    for key, label, figures in rows:
        if key in figures:
            print(f"| {label} | {median(figures[key]):.3f} | {max(figures[key]):.3f} |")
    if speed:
        print(
            f"| longest ticker gap over 3 s with no attach (the machine's own noise), ms | "
            f"{speed['pause_ms_unattached_3s']:.1f} | |"
        )
    print(json.dumps({"speed": speed, "overhead": cost}))


if __name__ == "__main__":
    main()
