"""A process that records as the server thread will: a real Recorder's events, stats and payloads
into a RecordingWriter, one tick at a time (no dspy: it starts fast).

Usage: python recording_job.py PATH [--calls-per-tick N] [--ticks N] [--fsize-limit BYTES]
Prints `TICK <calls> <seq>` after each tick's flush (everything up to there is on disk), and
`CLOSED <calls>` when it closed the file after --ticks ticks (without --ticks it runs until killed).
With --fsize-limit the file may not grow past BYTES (RLIMIT_FSIZE): writing fails as on a full disk,
and the job carries on; it prints `FAILED <reason>` once.
"""

import argparse
import os
import resource
import signal
import sys
import time

from dspy_top.instrumentation.recorder import Recorder
from dspy_top.recording import RecordingWriter

MODULES = (("RAG.generate_query.predict", "Predict"), ("RAG.answer.predict", "ChainOfThought"))
SYSTEM = (
    "Your input fields are:\n1. `question` (str):\nYour output fields are:\n1. `reasoning` (str):\n"
    "2. `answer` (str):\nAll interactions will be structured in the following way, with the appropriate "
    "values filled in.\n\n[[ ## question ## ]]\n{question}\n\n[[ ## reasoning ## ]]\n{reasoning}\n\n"
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--calls-per-tick", type=int, default=200)
    parser.add_argument("--ticks", type=int)
    parser.add_argument("--fsize-limit", type=int)
    args = parser.parse_args()
    if args.fsize_limit:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize_limit, args.fsize_limit))
    recorder = Recorder(history_capacity=100, queue_capacity=1_000_000)
    hello = {
        "t": "hello",
        "v": 2,
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "argv": sys.argv,
        "started_at": time.time(),
        "history_capacity": 100,
    }
    writer = RecordingWriter.create(args.path, hello)
    writer.add({"t": "snapshot", **recorder.snapshot()})
    reported = False
    tick = 0
    while args.ticks is None or tick < args.ticks:
        tick += 1
        for i in range(args.calls_per_tick):
            path, module_class = MODULES[i % 2]
            record = recorder.begin(path, module_class, tuple(path.split(".")[:-1]), "openai/gpt-4o-mini")
            recorder.finish(record, prompt_tokens=120 + i % 7, completion_tokens=30, cost=0.00003)
            question = f"What is {tick} + {i}?"
            writer.add_payload(
                record.id,
                {
                    "model": "openai/gpt-4o-mini",
                    "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}],
                    "outputs": [f"[[ ## answer ## ]]\n{tick + i}"],
                    "cache_hit": False,
                },
            )
        writer.add_events(recorder.drain())
        writer.add({"t": "stats", **recorder.stats()})
        writer.flush(force=True)  # this loop's ticks come faster than the server's: write every one
        if writer.failed and not reported:
            print("FAILED", writer.failed, flush=True)
            reported = True
        print("TICK", recorder.stats()["totals"]["calls"], recorder.sequence, flush=True)
    writer.close({"t": "exit", "at": time.time(), "stats": recorder.stats()})
    print("CLOSED", recorder.stats()["totals"]["calls"], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
