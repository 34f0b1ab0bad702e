"""A DSPy job for `dspy-top run` tests: no dspy_top import, so only DSPY_TOP=1 can instrument it.

Usage: python run_job.py [--calls N] [--lines N] [--then ok|crash|exit:N|wait|ignore-sigint]
Makes N program calls (2 LM calls each, on DummyLM), prints N lines of output, prints
`CALLS DONE <n>`, then: ends normally; raises; exits with status N; waits for SIGINT
(printing `GOT SIGINT` and exiting 130); or ignores SIGINT and waits forever.
"""

import argparse
import os
import signal
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from dspy.utils.dummies import DummyLM  # noqa: E402


class Pipeline(dspy.Module):
    def __init__(self):
        super().__init__()
        self.draft = dspy.Predict("question -> answer")
        self.check = dspy.ChainOfThought("question, answer -> verdict")

    def forward(self, question):
        answer = self.draft(question=question).answer
        return self.check(question=question, answer=answer)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3)
    parser.add_argument("--lines", type=int, default=0)
    parser.add_argument("--then", default="ok")
    args = parser.parse_args()
    if args.then == "ignore-sigint":
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    dspy.configure(lm=DummyLM([{"answer": "4", "reasoning": "sum", "verdict": "ok"}] * (2 * args.calls + 2)))
    program = Pipeline()
    for i in range(args.calls):
        program(question=f"question {i}")
    for i in range(args.lines):
        print(f"line {i} of {args.lines}: " + "x" * 60)
    print(f"CALLS DONE {2 * args.calls}", flush=True)
    if args.then == "crash":
        raise RuntimeError("the job crashed on purpose")
    if args.then.startswith("exit:"):
        return int(args.then.split(":", 1)[1])
    if args.then == "wait":
        try:
            while True:
                time.sleep(0.05)
        except KeyboardInterrupt:
            print("GOT SIGINT", flush=True)
            return 130
    if args.then == "ignore-sigint":
        while True:
            time.sleep(0.05)
    return 0


if __name__ == "__main__":
    sys.exit(main())
