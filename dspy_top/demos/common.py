"""What the demo scripts share: choosing the LM (simulated or real) and their small datasets.

Import this before `dspy`: it keeps litellm on its bundled price table, so the demos
need no network when they run on the simulated LM.
"""

from __future__ import annotations

import argparse
import ast
import operator
import os
import random
import re

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

SIM_URL_ENV = "DSPY_TOP_DEMO_LM_URL"  # set by `dspy-top demo`: the simulated LM it started
MODEL_ENV = "DSPY_TOP_DEMO_MODEL"
SPEED_ENV = "DSPY_TOP_DEMO_SPEED"
# The simulated LM answers as an OpenAI model; litellm prices it like the real one.
SIM_MODEL = "openai/gpt-4o-mini"

_sim = None  # a simulated LM this process started itself (when no URL was given)


def add_lm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        default=os.environ.get(MODEL_ENV) or None,
        metavar="MODEL",
        help="a litellm model string such as openai/gpt-4o-mini, with its API key in the "
        "environment (default: the built-in simulated LM, no key needed)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=float(os.environ.get(SPEED_ENV) or 1.0),
        help="latency scale of the simulated LM: 1 is like a real model, 0 answers at once",
    )
    parser.add_argument("--threads", type=int, default=4, help="parallel LM calls (default 4)")


def configure_lm(args: argparse.Namespace) -> dspy.LM:
    """`dspy.configure` the LM the flags ask for, with an in-memory cache only (each run starts cold)."""
    global _sim
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=True)
    if args.model:
        lm = dspy.LM(args.model)
    else:
        url = os.environ.get(SIM_URL_ENV)
        if not url:
            from dspy_top.simlm import SimLM

            _sim = SimLM(latency_scale=max(args.speed, 0.0)).start()
            url = _sim.base_url
        lm = dspy.LM(SIM_MODEL, api_base=url, api_key="sim", num_retries=3)
    dspy.configure(lm=lm)
    return lm


# --- data -------------------------------------------------------------------------------

_OPERATIONS = [("+", operator.add), ("-", operator.sub), ("*", operator.mul)]


def arithmetic_examples(count: int, seed: int = 0) -> list[dspy.Example]:
    """Questions like "What is 17 + 25?" with their answers; the simulated LM learns them from demos."""
    draw = random.Random(seed)
    examples = []
    for _ in range(count):
        symbol, apply = draw.choice(_OPERATIONS)
        a, b = draw.randint(2, 60), draw.randint(2, 40)
        if symbol == "*":
            b = draw.randint(2, 12)
        examples.append(
            dspy.Example(question=f"What is {a} {symbol} {b}?", answer=str(apply(a, b))).with_inputs("question")
        )
    return examples


def answer_is_correct(example, prediction, trace=None) -> bool:
    """The metric: the first number in the predicted answer equals the expected one."""
    found = re.search(r"-?\d+(?:\.\d+)?", str(getattr(prediction, "answer", "")))
    return found is not None and float(found.group(0)) == float(example.answer)


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression such as '17 + 25' (numbers, + - * / and parentheses)."""
    operations = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}

    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.BinOp) and type(node.op) in operations:
            return operations[type(node.op)](value(node.left), value(node.right))
        raise ValueError(f"not simple arithmetic: {expression!r}")

    try:
        return str(value(ast.parse(expression.replace("×", "*"), mode="eval").body))
    except (SyntaxError, ValueError, ZeroDivisionError) as exc:
        return f"error: {exc}"
