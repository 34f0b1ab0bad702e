"""The learnable part of the simulated LM: arithmetic questions it gets right more often with demos.

A question holding a simple expression ("What is 17 + 25?") has a true answer. The sim
gives it with probability ``accuracy(demos)`` -- 40% with no few-shot demonstrations,
+12.5 points per demo, 90% from 4 demos on -- and otherwise a nearby wrong number.
The coin is a hash of the whole request, so one prompt always gets the same verdict,
while a different demo set is a different draw: optimizers have a signal to climb.
"""

import ast
import operator
import re
from dataclasses import dataclass

from dspy_top.simlm.draws import rng, unit

_EXPRESSION = re.compile(r"\(?-?\d+(?:\.\d+)?\)?(?:\s*[-+*/×÷x]\s*\(?-?\d+(?:\.\d+)?\)?)+")
_OPERATORS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
BASE_ACCURACY = 0.40
PER_DEMO_ACCURACY = 0.125
MAX_ACCURACY = 0.90


@dataclass(frozen=True)
class ArithmeticOutcome:
    """An expression found in the question, its true value and the value the sim gives."""

    expression: str
    correct: int | float
    given: int | float

    @property
    def is_correct(self) -> bool:
        return self.given == self.correct


def accuracy(demos: int) -> float:
    return min(MAX_ACCURACY, BASE_ACCURACY + PER_DEMO_ACCURACY * max(demos, 0))


def _evaluate(node):
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.left), _evaluate(node.right))
    raise ValueError("not simple arithmetic")


def _tidy(value: float) -> int | float:
    if float(value).is_integer():
        return int(value)
    return round(value, 4)


def find_expression(text: str) -> tuple[str, int | float] | None:
    """The first evaluable expression in the text, with its value."""
    for match in _EXPRESSION.finditer(text):
        expression = match.group(0).strip()
        if not any(op in expression[1:] for op in "+-*/×÷x"):
            continue
        source = expression.replace("×", "*").replace("÷", "/").replace("x", "*")
        try:
            return expression, _tidy(_evaluate(ast.parse(source, mode="eval")))
        except (ValueError, SyntaxError, ZeroDivisionError, OverflowError):
            continue
    return None


def answer_arithmetic(text: str, demos: int, digest: str) -> ArithmeticOutcome | None:
    found = find_expression(text)
    if found is None:
        return None
    expression, correct = found
    if unit(digest, "arithmetic") < accuracy(demos):
        return ArithmeticOutcome(expression, correct, correct)
    draw = rng(digest, "arithmetic-miss")
    miss = draw.choice([-10, -3, -2, -1, 1, 2, 3, 10])
    return ArithmeticOutcome(expression, correct, _tidy(correct + miss))
