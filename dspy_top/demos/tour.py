"""What `dspy-top demo` runs: the RAG + ReAct batch, then the optimizer run, so every panel fills.

dspy-top run -- python demos/tour.py --speed 2          # or just: dspy-top demo --speed 2
"""

from __future__ import annotations

import argparse
import sys

from dspy_top.demos import optimize, rag_react
from dspy_top.demos.common import add_lm_options, arithmetic_examples, configure_lm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=40, help="questions in the RAG batch (default 40)")
    parser.add_argument("--train", type=int, default=24, help="optimizer training questions (default 24)")
    parser.add_argument("--dev", type=int, default=20, help="optimizer evaluation questions (default 20)")
    parser.add_argument("--no-mipro", action="store_true", help="stop after BootstrapFewShot")
    add_lm_options(parser)
    args = parser.parse_args(argv)
    lm = configure_lm(args)
    print(f"dspy-top demo on {lm.model}", flush=True)

    print(f"1/2 RAG + ReAct over {args.questions} questions with dspy.Parallel ({args.threads} threads)", flush=True)
    share = rag_react.run_batch(rag_react.WarehouseQA(), rag_react.warehouse_questions(args.questions), args.threads)
    print(f"    answered {share:.0%} correctly", flush=True)

    print(f"2/2 optimizing a solver: {args.train} train, {args.dev} dev questions", flush=True)
    optimize.optimize(
        arithmetic_examples(args.train, seed=10),
        arithmetic_examples(args.dev, seed=20),
        args.threads,
        mipro=not args.no_mipro,
    )
    print("demo finished", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
