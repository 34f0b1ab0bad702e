"""A RAG-style pipeline with a tool-using ReAct step, run over a small dataset with dspy.Parallel.

    dspy-top run -- python demos/rag_react.py               # the built-in simulated LM
    dspy-top run -- python demos/rag_react.py --model openai/gpt-4o-mini

Each question: write a search query, retrieve passages from a tiny in-memory corpus,
then a ReAct agent that may search again or use a calculator, then a final answer.
"""

from __future__ import annotations

import argparse
import random
import re
import sys

import dspy  # noqa: E402  (after common: it keeps litellm offline)

from dspy_top.demos.common import add_lm_options, answer_is_correct, arithmetic_examples, calculate, configure_lm

CORPUS = [
    "Aisle 1 of the Harbor Street warehouse stores bolts, sorted by thread size.",
    "Aisle 2 holds washers and nuts; a crate of nuts weighs 12 kg.",
    "Aisle 3 keeps hinges; new stock arrives every Monday in crates of 25.",
    "Aisle 4 is for power tools, which are counted individually, not in crates.",
    "Aisle 5 stores paint in 4-litre tins, 6 tins to a box.",
    "The loading dock accepts deliveries between 6 am and 2 pm.",
    "Stock counts are reconciled every Friday; a miscount over 3 crates is escalated.",
    "Returned goods go to Aisle 6 until they are inspected.",
    "The forklift can lift at most 40 crates per trip.",
    "Every crate carries a label with its aisle, its contents and its arrival date.",
]


def search(query: str) -> list[str]:
    """Search the warehouse handbook; returns the three most relevant passages."""
    words = set(re.findall(r"[a-z0-9]+", query.lower()))
    ranked = sorted(CORPUS, key=lambda passage: -len(words & set(re.findall(r"[a-z0-9]+", passage.lower()))))
    return ranked[:3]


class WarehouseQA(dspy.Module):
    """Query → retrieve → ReAct (tools: search, calculate) → answer."""

    def __init__(self):
        super().__init__()
        self.write_query = dspy.ChainOfThought("question -> search_query")
        self.agent = dspy.ReAct("question, passages: list[str] -> answer", tools=[search, calculate], max_iters=4)

    def forward(self, question: str):
        query = self.write_query(question=question).search_query
        passages = search(query)
        return self.agent(question=question, passages=passages)


def warehouse_questions(count: int, seed: int = 1) -> list[dspy.Example]:
    """Arithmetic questions dressed as warehouse questions, with their answers."""
    draw = random.Random(seed)
    aisles = ["Aisle 1", "Aisle 2", "Aisle 3", "Aisle 5", "the loading dock", "Aisle 6"]
    out = []
    for example in arithmetic_examples(count, seed):
        place = draw.choice(aisles)
        out.append(
            dspy.Example(
                question=f"A clerk counts crates in {place}. {example.question}", answer=example.answer
            ).with_inputs("question")
        )
    return out


def run_batch(program: dspy.Module, questions: list[dspy.Example], threads: int) -> float:
    """Answer every question with dspy.Parallel; returns the share answered correctly."""
    parallel = dspy.Parallel(num_threads=threads, disable_progress_bar=True, max_errors=len(questions))
    predictions = parallel([(program, example) for example in questions])
    correct = sum(bool(p is not None and answer_is_correct(e, p)) for e, p in zip(questions, predictions))
    return correct / max(len(questions), 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=40, help="how many questions (default 40)")
    add_lm_options(parser)
    args = parser.parse_args(argv)
    lm = configure_lm(args)
    print(f"RAG + ReAct over {args.questions} questions on {lm.model}, {args.threads} threads", flush=True)
    share = run_batch(WarehouseQA(), warehouse_questions(args.questions), args.threads)
    print(f"answered {share:.0%} correctly", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
