"""A small instrumented DSPy job for socket-level tests: a fixed-answer LM, N calls.

Usage: python dummy_job.py CALLS [--hold PATH] [--fork] [--start-after PATH]
Prints READY <socket path> once instrumented, DONE <calls> at the end; with --hold it
then waits until PATH exists before exiting (so tests can attach late).
"""

import argparse
import faulthandler
import os
import signal
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from dspy.utils.dummies import DummyLM  # noqa: E402

import dspy_top  # noqa: E402


class Pipeline(dspy.Module):
    def __init__(self):
        super().__init__()
        self.draft = dspy.Predict("question -> answer")
        self.check = dspy.ChainOfThought("question, answer -> verdict")

    def forward(self, question):
        answer = self.draft(question=question).answer
        return self.check(question=question, answer=answer)


def wait_for(path):
    while not os.path.exists(path):
        time.sleep(0.01)


def main():
    # A hung job prints every thread's stack after 240 s instead of hanging a test silently.
    faulthandler.dump_traceback_later(240, exit=True)
    parser = argparse.ArgumentParser()
    parser.add_argument("calls", type=int)
    parser.add_argument("--hold")
    parser.add_argument("--start-after")
    parser.add_argument("--fork", action="store_true")
    args = parser.parse_args()
    handle = dspy_top.instrument()
    lm = DummyLM([{"answer": "4", "reasoning": "sum", "verdict": "ok"}] * (args.calls + 2))
    # No DSPy cache: with --fork, parent and child would share the disk cache's SQLite
    # connection, which SQLite forbids across fork() (it can hang the child).
    lm.cache = False
    dspy.configure(lm=lm)
    program = Pipeline()
    print("READY", handle.socket_path, flush=True)
    if args.start_after:
        wait_for(args.start_after)
    if args.fork:
        pid = os.fork()
        if pid == 0:
            # faulthandler's watchdog thread does not survive fork (re-arming it in the child
            # waits on that thread forever), so the child's watchdog is an alarm signal: after
            # 240 s it prints every thread's stack and ends the child.
            faulthandler.register(signal.SIGALRM, chain=True)
            signal.alarm(240)
            child = dspy_top.instrument()
            program(question="child question")
            # One write per line: parent and child share the pipe, and print() writes the
            # text and its newline apart when stdout is unbuffered (PYTHONUNBUFFERED=1).
            sys.stdout.write(f"CHILD {os.getpid()} {child.socket_path}\n")
            sys.stdout.flush()
            wait_for(args.hold)
            os._exit(0)
    for i in range(args.calls // 2):
        program(question=f"question {i}")
    sys.stdout.write(f"DONE {handle.stats()['totals']['calls']}\n")
    sys.stdout.flush()
    if args.hold:
        wait_for(args.hold)


if __name__ == "__main__":
    sys.exit(main())
