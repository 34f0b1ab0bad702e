"""An instrumented DSPy job for the hardening tests, driven line by line over stdin.

Usage: python line_job.py [--nofile N] [ARG...]
Instruments itself (settings from the environment, as any job), prints READY <socket>
(or READY - when it serves none), then obeys stdin:
  run N      N program calls (2 LM calls each, DummyLM); prints TRUTH <stats json>
  open N     opens N files at once, closes them; prints OPENED <how many opened>
  hold N     opens up to N files and keeps them; prints HELD <how many>
  release    closes what `hold` kept; prints RELEASED
  cpu        prints CPU <seconds of CPU time this process has used>
  exit       ends normally (viewers get the exit frame)
--nofile N lowers its own limit of open files to N first. ARG... are ignored (they are
only there to be in its command line).
"""

import argparse
import json
import os
import resource
import sys
import tempfile

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from dspy.utils.dummies import DummyLM  # noqa: E402
from dummy_job import Pipeline  # noqa: E402  (this directory is on sys.path: the script's own)

import dspy_top  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nofile", type=int)
    parser.add_argument("rest", nargs="*")
    args = parser.parse_args()
    if args.nofile:
        resource.setrlimit(resource.RLIMIT_NOFILE, (args.nofile, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    handle = dspy_top.instrument()
    lm = DummyLM([{"answer": "4", "reasoning": "sum", "verdict": "ok"}] * 1_000_000)
    lm.cache = False
    dspy.configure(lm=lm)
    program = Pipeline()
    print("READY", handle.socket_path or "-", flush=True)
    done = 0
    scratch = tempfile.mkdtemp(prefix="line-job-")
    held = []
    for line in sys.stdin:
        command = line.split()
        if not command:
            continue
        if command[0] == "run":
            for _ in range(int(command[1])):
                program(question=f"question {done}")
                done += 1
            print("TRUTH", json.dumps(handle.stats(), default=str), flush=True)
        elif command[0] == "open":
            files = []
            try:
                for number in range(int(command[1])):
                    files.append(open(os.path.join(scratch, f"f{number}"), "w"))
            except OSError:
                pass
            print("OPENED", len(files), flush=True)
            for handle_ in files:
                handle_.close()
        elif command[0] == "hold":
            try:
                while len(held) < int(command[1]):
                    held.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                pass
            print("HELD", len(held), flush=True)
        elif command[0] == "release":
            for fd in held:
                os.close(fd)
            held.clear()
            print("RELEASED", flush=True)
        elif command[0] == "cpu":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            print("CPU", usage.ru_utime + usage.ru_stime, flush=True)
        elif command[0] == "exit":
            break


if __name__ == "__main__":
    main()
