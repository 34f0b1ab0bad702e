"""Choose a value for every output field a request asks for, with the right type.

Reasoning-like fields get a few sentences, the main answer field gets the arithmetic
result (right or wrong, see ``arithmetic``) or a short answer, ReAct's fields follow
``react_policy``, and typed fields get a valid int/float/bool/choice/JSON value.
"""

import re

from dspy_top.simlm.arithmetic import ArithmeticOutcome, answer_arithmetic
from dspy_top.simlm.draws import rng
from dspy_top.simlm.field_types import FieldType, field_type
from dspy_top.simlm.prompt import PromptView, trajectory_sections
from dspy_top.simlm.react_policy import FINISH, is_react_step, react_step
from dspy_top.simlm.schema_values import example_value
from dspy_top.simlm.wording import excerpt, reasoning, short_answer, topic_of

_REASONING_NAMES = frozenset(
    {"reasoning", "rationale", "thought", "thoughts", "thinking", "explanation", "analysis", "justification"}
)
_REACT_NAMES = frozenset({"next_thought", "next_tool_name", "next_tool_args"})


def _is_reasoning(name: str) -> bool:
    return name in _REASONING_NAMES or name.endswith(("_reasoning", "_rationale"))


def _answer_field(view: PromptView, types: dict[str, FieldType]) -> str | None:
    """The field that carries the task's answer: the first non-reasoning str/int/float field."""
    for output in view.output_fields:
        if output.name in _REACT_NAMES or _is_reasoning(output.name):
            continue
        if types[output.name].kind in ("str", "int", "float"):
            return output.name
    return None


def _last_observation(trajectory: str) -> str:
    """The newest tool result in a ReAct trajectory, skipping finish's "Completed."."""
    sections = trajectory_sections(trajectory)
    steps = sorted((int(k.rsplit("_", 1)[1]) for k in sections if re.fullmatch(r"observation_\d+", k)), reverse=True)
    for step in steps:
        if sections.get(f"tool_name_{step}", "").strip() != FINISH:
            return sections[f"observation_{step}"]
    return ""


def _arithmetic_value(kind: str, outcome: ArithmeticOutcome):
    if kind == "int":
        return int(round(outcome.given))
    if kind == "float":
        return float(outcome.given)
    return str(outcome.given)


def _typed_value(kind: FieldType, draw, topic: str):
    if kind.kind == "int":
        return draw.randint(1, 12)
    if kind.kind == "float":
        return round(draw.uniform(0.1, 0.99), 2)
    if kind.kind == "bool":
        return draw.random() < 0.5
    if kind.kind == "choice":
        return draw.choice(kind.choices)
    if kind.kind == "json":
        return example_value(kind.schema or {}, draw, topic)
    return short_answer(topic, draw)


def compose(view: PromptView, digest: str) -> dict:
    """Field name -> value (JSON-ready Python), in the order the adapter listed the fields."""
    types = {o.name: field_type(o, view.response_schema) for o in view.output_fields}
    topic = topic_of(view.question_text)
    outcome = answer_arithmetic(view.question_text, view.demos, digest)
    answer_name = _answer_field(view, types)
    conclusion = None
    subject = topic  # what the reasoning talks about
    if outcome is not None:
        subject = outcome.expression
        conclusion = f"Computing {outcome.expression} gives {outcome.given}."
    step = None
    if is_react_step(view):
        step = react_step(view, types["next_tool_name"].choices, topic, digest)

    values = {}
    for output in view.output_fields:
        name, kind = output.name, types[output.name]
        draw = rng(digest, f"field:{name}")
        if step is not None and name in step:
            values[name] = step[name]
        elif _is_reasoning(name) and kind.kind == "str":
            values[name] = reasoning(subject, draw, conclusion)
        elif name == answer_name and outcome is not None:
            values[name] = _arithmetic_value(kind.kind, outcome)
        elif name == answer_name and kind.kind == "str" and view.observations:
            values[name] = excerpt(_last_observation(view.trajectory)) or short_answer(topic, draw)
        else:
            values[name] = _typed_value(kind, draw, topic)
    return values


def plain_reply(view: PromptView, digest: str) -> str:
    """A reply for a request with no DSPy structure: a sentence or two."""
    draw = rng(digest, "plain")
    outcome = answer_arithmetic(view.question_text, view.demos, digest)
    if outcome is not None:
        return f"{outcome.expression} = {outcome.given}."
    return reasoning(topic_of(view.question_text), draw)
