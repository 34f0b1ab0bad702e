"""A DSPy job for the recording tests: a real program on the simulated LM (SIM_URL), recorded as
DSPY_TOP_RECORD and the config file say (the test sets them; the job only calls instrument()).

Usage: python record_job.py [--threads T] [--run N]
With --run N: makes N program calls, prints `DONE <calls>` and exits (for `dspy-top run`, whose
jobs have no stdin). Otherwise prints `READY <socket> <recording>`, then obeys stdin, one command a line:
  run N      N program calls (Predict then ChainOfThought: 2 LM calls each), under
             dspy.Evaluate(num_threads=T) when T > 1; prints `DONE <this process's calls>`
  cached N   N calls of one Predict with DSPy's memory cache on, all but the first answered from
             it (thousands a second, all CPU: the job lets the GIL go only briefly, in os.urandom);
             prints `AT <this process's calls> <time.time()>` after every 1,000, then `CACHED <this
             process's calls> <the server thread's GIL handoffs: given missed>`
  fork N     forks a child that makes N program calls and exits normally (its own recording);
             prints `CHILD <pid> <its recording>` once the child is done
  packer     prints `PACKER <compiled part there: 1/0> <payloads packed in C> <payloads left to the
             Python pass by the packer>` (payload_pack.py)
  ring       prints `RING <slots the payload ring holds> <of them not taken by the recording> <the
             history's count> <the ring's bound>` once the recording took the calls so far (payload_ring.py)
  exit       ends normally
A hold on stdin (nothing sent) keeps it waiting: a test may SIGKILL it there.
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from dummy_job import Pipeline  # noqa: E402  (this directory is on sys.path: the script's own)

import dspy_top  # noqa: E402


def sim_lm(cache: bool) -> dspy.LM:
    """DSPy's real client to the simulated LM the test started (SIM_URL)."""
    return dspy.LM(
        "openai/gpt-4o-mini",
        api_base=os.environ["SIM_URL"],
        api_key=os.environ.get("JOB_API_KEY", "sim"),
        cache=cache,
        num_retries=0,
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--run", type=int)
    args = parser.parse_args()
    handle = dspy_top.instrument()
    dspy.configure(lm=sim_lm(cache=False))
    program = Pipeline()
    done = 0

    def run(count: int) -> None:
        nonlocal done
        questions = [f"What is {done + i} + {i % 7}?" for i in range(count)]
        done += count
        if args.threads > 1:
            devset = [dspy.Example(question=q).with_inputs("question") for q in questions]
            dspy.Evaluate(
                devset=devset,
                metric=lambda example, prediction, trace=None: 1.0,
                num_threads=args.threads,
                display_progress=False,
            )(program)
        else:
            for question in questions:
                program(question=question)

    if args.run is not None:
        run(args.run)
        print("DONE", handle.stats()["totals"]["calls"], flush=True)
        return 0
    print("READY", handle.socket_path, handle.recording_path, flush=True)
    for line in sys.stdin:
        command = line.split()
        if not command:
            continue
        if command[0] == "run":
            run(int(command[1]))
            print("DONE", handle.stats()["totals"]["calls"], flush=True)
        elif command[0] == "cached":
            dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
            cached_lm = sim_lm(cache=True)
            predict = dspy.Predict("question -> answer")
            with dspy.context(lm=cached_lm):
                for number in range(1, int(command[1]) + 1):
                    predict(question="What is 2 + 2?")
                    if number % 1000 == 0:
                        print("AT", handle.stats()["totals"]["calls"], time.time(), flush=True)
            handoff = handle.recorder.handoff
            print("CACHED", handle.stats()["totals"]["calls"], handoff.given, handoff.missed, flush=True)
        elif command[0] == "fork":
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: its own calls, its own recording, a normal exit (atexit closes it)
                os.close(read)
                run(int(command[1]))
                os.write(
                    write,
                    json.dumps([handle.stats()["totals"]["calls"], str(dspy_top.instrument().recording_path)]).encode(),
                )
                os.close(write)
                sys.exit(0)
            os.close(write)
            with os.fdopen(read) as pipe:
                calls, path = json.loads(pipe.read())
            os.waitpid(pid, 0)
            print("CHILD", pid, calls, path, flush=True)
        elif command[0] == "packer":
            handle.server.push_totals(timeout=10)  # the calls so far taken by the recording first
            from dspy_top.instrumentation import payload_pack

            packer = handle.server.requests._packer
            counts = (packer.packed, packer.by_python) if packer else (0, 0)
            print("PACKER", int(payload_pack.AVAILABLE), *counts, flush=True)
        elif command[0] == "ring":
            handle.server.push_totals(timeout=10)
            from dspy_top.instrumentation.payload_ring import TAKEN

            ring = handle.recorder.payload_ring
            with handle.recorder.lock:
                untaken = sum(1 for slot in ring.ring if not slot[TAKEN])
                print("RING", len(ring.ring), untaken, ring.keep_count, ring.capacity, flush=True)
        elif command[0] == "exit":
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
