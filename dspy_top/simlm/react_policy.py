"""How the simulated LM drives dspy.ReAct: call one tool with schema-valid arguments, then finish.

The first step (no observation in the trajectory yet) picks the tool whose name and
description share the most words with the question (ties broken by the request hash)
and fills every argument without a default from the question. Any later step chooses
``finish``, so a ReAct program ends after two agent calls plus its extract call.
"""

import random
import re

from dspy_top.simlm.arithmetic import find_expression
from dspy_top.simlm.draws import rng
from dspy_top.simlm.prompt import PromptView, ToolSpec
from dspy_top.simlm.schema_values import example_value

FINISH = "finish"
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_MATH_ARG = re.compile(r"expr|equation|formula|calc|math")
_TEXT_ARG = re.compile(r"query|question|text|prompt|search|input")


def is_react_step(view: PromptView) -> bool:
    names = {f.name for f in view.output_fields}
    return {"next_tool_name", "next_tool_args"} <= names


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]{3,}", text)}


def _choose_tool(candidates: list[ToolSpec], question: str, digest: str) -> ToolSpec:
    asked = _words(question)
    draw = rng(digest, "react-tool")
    return max(candidates, key=lambda t: (len(asked & _words(f"{t.name} {t.description}")), draw.random()))


def _arguments(tool: ToolSpec, question: str, topic: str, draw: random.Random) -> dict:
    numbers = iter(_NUMBER.findall(question))
    found = find_expression(question)
    args = {}
    for name, schema in tool.args.items():
        schema = schema if isinstance(schema, dict) else {}
        if "default" in schema:
            continue
        kind = schema.get("type")
        if kind == "string" and found and _MATH_ARG.search(name.lower()):
            args[name] = found[0]
        elif kind == "string" and _TEXT_ARG.search(name.lower()):
            args[name] = question.strip().splitlines()[0][:120] if question.strip() else topic
        elif kind == "string" and not schema.get("enum"):
            args[name] = topic
        elif kind in ("integer", "number"):
            number = next(numbers, None)
            if number is None:
                args[name] = example_value(schema, draw, topic)
            else:
                value = float(number)
                args[name] = int(value) if kind == "integer" or value.is_integer() else value
        else:
            args[name] = example_value(schema, draw, topic)
    return args


def react_step(view: PromptView, allowed: tuple, topic: str, digest: str) -> dict:
    """next_thought, next_tool_name and next_tool_args for one ReAct step."""
    tools = [t for t in view.tools if t.name != FINISH and (not allowed or t.name in allowed)]
    if not tools:
        # Tool names are known from the Literal even when the tool list was not parsed.
        tools = [ToolSpec(name) for name in allowed if name != FINISH]
    if view.observations > 0 or not tools:
        thought = (
            "The observation gives me what I need, so I can finish and answer."
            if view.observations
            else "I already have enough information to answer, so I will finish."
        )
        return {"next_thought": thought, "next_tool_name": FINISH, "next_tool_args": {}}
    tool = _choose_tool(tools, view.question_text, digest)
    args = _arguments(tool, view.question_text, topic, rng(digest, "react-args"))
    thought = f"I should call {tool.name} to find out about {topic} before answering."
    return {"next_thought": thought, "next_tool_name": tool.name, "next_tool_args": args}
