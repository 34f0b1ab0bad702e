"""An optimizer run: evaluate a two-step solver, compile it with BootstrapFewShot, then MIPROv2 (light).

    dspy-top run -- python demos/optimize.py                # the built-in simulated LM
    dspy-top run -- python demos/optimize.py --model openai/gpt-4o-mini

The simulated LM answers arithmetic correctly more often when the prompt carries
few-shot demos, so the scores climb as the optimizers add them. MIPROv2 needs
optuna (`pip install "dspy-top[demo]"`); without it that step is skipped.
"""

from __future__ import annotations

import argparse
import sys

import dspy  # noqa: E402  (after common: it keeps litellm offline)

from dspy_top.demos.common import add_lm_options, answer_is_correct, arithmetic_examples, configure_lm


class Solver(dspy.Module):
    """Plan, then solve with reasoning."""

    def __init__(self):
        super().__init__()
        self.plan = dspy.Predict("question -> plan")
        self.solve = dspy.ChainOfThought("question, plan -> answer")

    def forward(self, question: str):
        plan = self.plan(question=question).plan
        return self.solve(question=question, plan=plan)


def evaluate(program: dspy.Module, devset: list[dspy.Example], threads: int, label: str) -> float:
    evaluator = dspy.Evaluate(
        devset=devset, metric=answer_is_correct, num_threads=threads, display_progress=False, display_table=False
    )
    score = float(evaluator(program).score)
    print(f"{label}: {score:.1f}% on {len(devset)} dev questions", flush=True)
    return score


def optimize(trainset: list[dspy.Example], devset: list[dspy.Example], threads: int, mipro: bool = True) -> dspy.Module:
    """Baseline, BootstrapFewShot, then MIPROv2 light; every step evaluated on `devset`."""
    program = Solver()
    evaluate(program, devset, threads, "baseline (no demos)")

    bootstrap = dspy.BootstrapFewShot(metric=answer_is_correct, max_bootstrapped_demos=4, max_labeled_demos=4)
    program = bootstrap.compile(Solver(), trainset=trainset)
    evaluate(program, devset, threads, "BootstrapFewShot")

    if not mipro:
        return program
    try:
        import optuna  # noqa: F401  (MIPROv2's search needs it)
    except ImportError:
        print('MIPROv2 skipped: it needs optuna (pip install "dspy-top[demo]")', flush=True)
        return program
    mipro_optimizer = dspy.MIPROv2(
        metric=answer_is_correct,
        auto="light",
        num_threads=threads,
        max_bootstrapped_demos=3,
        max_labeled_demos=3,
        verbose=False,
    )
    program = mipro_optimizer.compile(Solver(), trainset=trainset, valset=devset)
    evaluate(program, devset, threads, "MIPROv2 (light)")
    return program


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=24, help="training questions (default 24)")
    parser.add_argument("--dev", type=int, default=20, help="evaluation questions (default 20)")
    parser.add_argument("--no-mipro", action="store_true", help="stop after BootstrapFewShot")
    add_lm_options(parser)
    args = parser.parse_args(argv)
    lm = configure_lm(args)
    print(f"optimizing a solver on {lm.model}: {args.train} train, {args.dev} dev questions", flush=True)
    trainset = arithmetic_examples(args.train, seed=10)
    devset = arithmetic_examples(args.dev, seed=20)
    optimize(trainset, devset, args.threads, mipro=not args.no_mipro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
