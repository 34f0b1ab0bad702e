"""An instrumented DSPy job for the `dspy-top serve` tests: real programs against the simulated LM at SIM_URL.

    python serve_job.py CALLS [--evaluate N] [--optimize] [--threads K]

Makes CALLS program calls (two LM calls each: `Pipeline.draft`, `Pipeline.check.predict`), then, with
--evaluate, a `dspy.Evaluate` over N arithmetic examples, and with --optimize, a
BootstrapFewShotWithRandomSearch (two candidates) whose evaluations are its trials. Prints
`TRUTH <json>` (the job's own exact stats) and waits for `exit` on stdin.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from dummy_job import Pipeline  # noqa: E402  (this directory is on sys.path: the script's own)

import dspy_top  # noqa: E402


def examples(n, offset=0):
    return [
        dspy.Example(question=f"What is {i} + {3 * i + offset}?", answer=str(4 * i + offset)).with_inputs("question")
        for i in range(n)
    ]


def metric(example, prediction, trace=None):
    return example.answer == str(prediction.answer).strip()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("calls", type=int)
    parser.add_argument("--evaluate", type=int, default=0)
    parser.add_argument("--optimize", action="store_true")
    args = parser.parse_args()
    handle = dspy_top.instrument()
    dspy.configure(lm=dspy.LM("openai/gpt-4o-mini", api_base=os.environ["SIM_URL"], api_key="sim", cache=False))
    program = Pipeline()
    for number in range(args.calls):
        program(question=f"What is {number} + 2?")
    if args.evaluate:
        dspy.Evaluate(devset=examples(args.evaluate), metric=metric, num_threads=4, display_progress=False)(
            dspy.Predict("question -> answer")
        )
    if args.optimize:
        data = examples(16, offset=1)
        optimizer = dspy.BootstrapFewShotWithRandomSearch(
            metric=metric, num_candidate_programs=2, max_bootstrapped_demos=2, num_threads=4
        )
        optimizer.compile(dspy.Predict("question -> answer"), trainset=data[:8], valset=data[8:])
    print("TRUTH", json.dumps(handle.stats(), default=str), flush=True)
    for line in sys.stdin:
        if line.strip() == "exit":
            break


if __name__ == "__main__":
    main()
