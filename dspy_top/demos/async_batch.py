"""An async batch: many questions answered concurrently with `await program.acall(...)`.

    dspy-top run -- python demos/async_batch.py             # the built-in simulated LM
    dspy-top run -- python demos/async_batch.py --model openai/gpt-4o-mini

A semaphore caps how many LM calls are in flight, as a rate-limited service would.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import dspy  # noqa: E402  (after common: it keeps litellm offline)

from dspy_top.demos.common import add_lm_options, answer_is_correct, arithmetic_examples, configure_lm


class Summarize(dspy.Module):
    """Answer, then explain the answer in one sentence."""

    def __init__(self):
        super().__init__()
        self.answer = dspy.ChainOfThought("question -> answer")
        self.explain = dspy.Predict("question, answer -> explanation")

    async def aforward(self, question: str):
        answer = (await self.answer.acall(question=question)).answer
        explanation = (await self.explain.acall(question=question, answer=answer)).explanation
        return dspy.Prediction(answer=answer, explanation=explanation)


async def answer_all(questions: list[dspy.Example], concurrency: int) -> list[dspy.Prediction]:
    program = Summarize()
    gate = asyncio.Semaphore(concurrency)

    async def one(example: dspy.Example) -> dspy.Prediction:
        async with gate:
            return await program.acall(**example.inputs())

    return await asyncio.gather(*(one(example) for example in questions))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=60, help="how many questions (default 60)")
    add_lm_options(parser)
    args = parser.parse_args(argv)
    lm = configure_lm(args)
    concurrency = max(args.threads * 2, 1)
    print(f"async batch of {args.questions} questions on {lm.model}, {concurrency} at a time", flush=True)
    questions = arithmetic_examples(args.questions, seed=30)
    predictions = asyncio.run(answer_all(questions, concurrency))
    correct = sum(answer_is_correct(e, p) for e, p in zip(questions, predictions))
    print(f"answered {correct}/{len(questions)} correctly", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
