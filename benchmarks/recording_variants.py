"""Where a recording's cost to a job comes from: the `predict` job of benchmarks/overhead.py (a
fixed-answer LM, all CPU) timed per LM call in fresh processes, recording or not, with parts of
the recording switched off, round by round, each variant's difference to `unwatched` paired in
its round.

    python benchmarks/recording_variants.py [--rounds 8] [--calls 4000] [VARIANT ...]

Variants: `unwatched` (instrumented, not recording: the baseline), `recording`,
`recording-stored` (its payloads deflated at level 0, stored: zlib's CPU left out), `notake` (the
file open, but the recording's own `take` and `tick` do nothing: what a recording turns on
besides its own work), `notake-ring1000` (that, with the payload ring at the history's 1,000
calls instead of a recording job's 4,096), `notake-nostats` (that, without the stats the server
publishes to its taps each tick), `notake-noevents` (that, without the calls it publishes to
them), `recording-nohandoff` (recording, the job's threads never giving the server thread the GIL:
gil_handoff.py; the server thread then waits for it for seconds a tick). A diagnostic: the parts
are switched off by replacing them, which no user would do. The
last line of output is JSON.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VARIANTS = (
    "unwatched",
    "recording",
    "recording-stored",
    "notake",
    "notake-ring1000",
    "notake-nostats",
    "notake-noevents",
    "recording-nohandoff",
)


def worker(variant: str, calls: int) -> dict:
    import gc

    sys.path.insert(0, str(REPO / "benchmarks"))
    import dspy
    import overhead

    import dspy_top
    from dspy_top.instrumentation import recording, runtime, server
    from dspy_top.recording import writer

    if variant == "recording-stored":
        writer.PAYLOADS_LEVEL = 0

    if variant == "recording-nohandoff":
        from dspy_top.instrumentation import gil_handoff

        gil_handoff.Handoff.give = lambda self, now: None
    if variant.startswith("notake"):
        recording.JobRecording.take = lambda self, message: None
        recording.JobRecording.tick = lambda self, force=False: None
    if variant == "notake-ring1000":
        runtime.RECORDING_PAYLOADS = 1000
    if variant == "notake-nostats":
        server.SocketServer._publish_stats = lambda self, force=False: None
    if variant == "notake-noevents":
        server.SocketServer._publish_events = lambda self: self.recorder.drain() and None
    directory = tempfile.mkdtemp(prefix="dtop-variants-")
    handle = dspy_top.instrument(record=False if variant == "unwatched" else f"{directory}/")
    dspy.configure(lm=overhead.fixed_lm())
    program = overhead.build_program("predict")
    for i in range(200):
        program(question=f"q {i}")
    gc.collect()
    handoff = handle.recorder.handoff
    given, missed, waited = handoff.given, handoff.missed, handoff.waited
    cpu, own, started = time.process_time(), time.thread_time(), time.perf_counter()
    for i in range(calls):
        program(question=f"q {1000 + i}")
    if handle.server is not None:
        handle.server.push_totals(timeout=5.0)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    own = time.thread_time() - own
    dropped = 0
    if handle.recording is not None:  # a recording not even opened by now stored none
        writer = handle.recording.writer
        dropped = writer.state.payloads_dropped if writer is not None else calls
    shutil.rmtree(directory, ignore_errors=True)
    return {
        "wall_us": wall / calls * 1e6,
        "cpu_us": cpu / calls * 1e6,
        "job_thread_cpu_us": own / calls * 1e6,  # the job's own thread: its work, and what slows it
        "given": handoff.given - given,  # the server thread's turns for the GIL (gil_handoff.py)
        "missed": handoff.missed - missed,
        "giving_us": (handoff.waited - waited) / calls * 1e6,  # the job thread's waits for those turns
        "payloads_dropped": dropped,
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["--worker"]:
        print(json.dumps(worker(argv[1], int(argv[2]))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("variants", nargs="*", metavar="VARIANT", help="of: " + ", ".join(VARIANTS))
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--calls", type=int, default=4000)
    args = parser.parse_args(argv)
    unknown = set(args.variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant {sorted(unknown)[0]!r}; the variants: {', '.join(VARIANTS)}")
    variants = ["unwatched"] + [v for v in args.variants or VARIANTS if v != "unwatched"]
    samples: dict[str, list[dict]] = {v: [] for v in variants}
    for number in range(args.rounds):
        for variant in variants if number % 2 == 0 else variants[::-1]:
            out = subprocess.run(
                [sys.executable, __file__, "--worker", variant, str(args.calls)],
                capture_output=True,
                text=True,
                check=True,
                timeout=900,
            ).stdout
            samples[variant].append(json.loads(out.strip().splitlines()[-1]))
        print(f"round {number + 1} of {args.rounds}", flush=True)
    base = samples["unwatched"]
    results = {}
    for variant in variants:
        wall = [s["wall_us"] - b["wall_us"] for s, b in zip(samples[variant], base)]
        cpu = [s["cpu_us"] - b["cpu_us"] for s, b in zip(samples[variant], base)]
        own = [s["job_thread_cpu_us"] - b["job_thread_cpu_us"] for s, b in zip(samples[variant], base)]
        results[variant] = {
            "wall_us": round(statistics.median(s["wall_us"] for s in samples[variant]), 1),
            "wall_difference_us": round(statistics.median(wall), 1),
            "cpu_difference_us": round(statistics.median(cpu), 1),
            "job_thread_cpu_difference_us": round(statistics.median(own), 1),
            "given_per_1000_calls": round(
                1000 * statistics.median(s["given"] for s in samples[variant]) / args.calls, 1
            ),
            "missed": sum(s["missed"] for s in samples[variant]),
            "giving_us": round(statistics.median(s["giving_us"] for s in samples[variant]), 2),
            "payloads_dropped": sum(s["payloads_dropped"] for s in samples[variant]),
            "wall_differences_us": [round(d, 1) for d in wall],
        }
        print(variant, results[variant], flush=True)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
