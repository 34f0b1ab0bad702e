"""Read what a DSPy adapter asked for out of a chat-completions request.

DSPy's ChatAdapter, JSONAdapter and XMLAdapter all put the same facts in the system
message: "Your output fields are:" with each field's annotation, a structure template
whose "# note:" lines carry Literal choices and JSON schemas, and for ReAct a numbered
tool list with each tool's argument schema. Few-shot demos arrive as user/assistant
pairs before the final user message, which holds the inputs.
"""

import ast
import json
import re
from dataclasses import dataclass, field

_OUTPUT_LIST_START = "Your output fields are:"
_OUTPUT_LIST_END = "All interactions will be structured"
_INPUT_LIST_START = "Your input fields are:"
_JSON_TEMPLATE_START = "Outputs will be a JSON object with the following fields."
_FIELD_LINE = re.compile(r"^\d+\. `(\w+)` \((.*?)\):")
_NOTE = re.compile(r"^\{(\w+)\}\s+# note: the value you produce (.+)$")
_CHAT_HEADER = re.compile(r"^\[\[ ## (\w+) ## \]\]\s*$")
_TOOL_LINE = re.compile(r"^\(\d+\) (.+?)(?:, whose description is <desc>(.*)</desc>)?\. It takes arguments (\{.*\})\.$")
_OBSERVATION = re.compile(r"(?:\[\[ ## |<)observation_\d+(?: ## \]\]|>)")
_OUTPUT_REMINDER = re.compile(r"\n*Respond with (?:the corresponding output fields|a JSON object).*\Z", re.DOTALL)


@dataclass(frozen=True)
class OutputField:
    """One output field as the adapter described it."""

    name: str
    annotation: str = "str"  # as DSPy prints it: "int", "list[str]", "Literal['a', 'b']"
    note: str = ""  # the text after "# note: the value you produce", if any


@dataclass(frozen=True)
class ToolSpec:
    """A tool ReAct offers, with its arguments' JSON schemas."""

    name: str
    description: str = ""
    args: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PromptView:
    """The parts of a request the simulated LM answers from."""

    style: str  # "chat", "json", "xml" or "plain": the reply format the client will parse
    output_fields: tuple[OutputField, ...]
    inputs: dict  # final user message's input sections, field name -> text
    demos: int  # few-shot demonstrations (assistant turns before the final user turn)
    tools: tuple[ToolSpec, ...]
    observations: int  # tool observations already in a ReAct trajectory
    final_user_text: str
    response_schema: dict | None  # the json_schema response_format's schema, if sent

    @property
    def question_text(self) -> str:
        """The task's own inputs, without ReAct's trajectory, or the bare user turn."""
        if self.inputs:
            return "\n".join(text for name, text in self.inputs.items() if name != "trajectory")
        return self.final_user_text

    @property
    def trajectory(self) -> str:
        return self.inputs.get("trajectory", "")


def _text_of(message: dict) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _between(text: str, start: str, end: str) -> str:
    begin = text.find(start)
    if begin < 0:
        return ""
    begin += len(start)
    stop = text.find(end, begin)
    return text[begin:] if stop < 0 else text[begin:stop]


def _listed_fields(system: str, start: str, end: str) -> list[tuple[str, str]]:
    listed = []
    for line in _between(system, start, end).splitlines():
        match = _FIELD_LINE.match(line.strip())
        if match:
            listed.append((match.group(1), match.group(2).strip()))
    return listed


def _notes(system: str) -> dict[str, str]:
    """Field name -> note, from the ChatAdapter/XMLAdapter template or JSONAdapter's JSON block."""
    candidates = [line.strip() for line in system.splitlines()]
    start = system.find(_JSON_TEMPLATE_START)
    if start >= 0:
        brace = system.find("{", start)
        try:
            template, _ = json.JSONDecoder().raw_decode(system[brace:])
            candidates.extend(v for v in template.values() if isinstance(v, str))
        except (ValueError, AttributeError):
            pass
    notes = {}
    for candidate in candidates:
        match = _NOTE.match(candidate)
        if match:
            notes.setdefault(match.group(1), match.group(2).strip())
    return notes


def _tools(system: str) -> tuple[ToolSpec, ...]:
    tools = []
    for line in system.splitlines():
        match = _TOOL_LINE.match(line.strip())
        if not match:
            continue
        try:
            args = ast.literal_eval(match.group(3))
        except (ValueError, SyntaxError):
            args = {}
        tools.append(ToolSpec(match.group(1), match.group(2) or "", args if isinstance(args, dict) else {}))
    return tuple(tools)


def _chat_sections(text: str, names: set[str]) -> dict[str, str]:
    # Only headers naming a declared input start a section: ReAct's trajectory holds
    # its own [[ ## thought_0 ## ]] headers, which belong to the trajectory's text.
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        match = _CHAT_HEADER.match(line.strip())
        if match and (not names or match.group(1) in names):
            current = match.group(1)
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {name: "\n".join(lines).strip() for name, lines in sections.items()}


def _xml_sections(text: str, names: set[str]) -> dict[str, str]:
    sections = {}
    for name in names:
        match = re.search(rf"<{name}>\n?(.*?)\n?</{name}>", text, re.DOTALL)
        if match:
            sections[name] = match.group(1).strip()
    return sections


def trajectory_sections(trajectory: str) -> dict[str, str]:
    """ReAct's trajectory as thought_N/tool_name_N/tool_args_N/observation_N -> text."""
    sections = _chat_sections(trajectory, set())
    if sections:
        return sections
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"<(\w+)>\n?(.*?)\n?</\1>", trajectory, re.DOTALL)}


def _response_schema(body: dict) -> dict | None:
    response_format = body.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    schema = (response_format.get("json_schema") or {}).get("schema")
    return schema if isinstance(schema, dict) else None


def _style(body: dict, system: str, final_user: str) -> str:
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_schema", "json_object"):
        return "json"
    if _JSON_TEMPLATE_START in system:
        return "json"
    if "[[ ## completed ## ]]" in system:
        return "chat"
    if "wrapped in XML tags" in final_user:
        return "xml"
    return "plain"


def read_prompt(body: dict) -> PromptView:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    system = "\n".join(_text_of(m) for m in messages if m.get("role") in ("system", "developer"))
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    final_index = users[-1] if users else len(messages)
    final_user = _text_of(messages[final_index]) if users else ""
    demos = sum(1 for m in messages[:final_index] if m.get("role") == "assistant")

    notes = _notes(system)
    listed = _listed_fields(system, _OUTPUT_LIST_START, _OUTPUT_LIST_END)
    schema = _response_schema(body)
    if not listed and schema:
        listed = [(name, "") for name in (schema.get("properties") or {})]
    output_fields = tuple(OutputField(name, annotation or "str", notes.get(name, "")) for name, annotation in listed)

    style = _style(body, system, final_user)
    input_names = {name for name, _ in _listed_fields(system, _INPUT_LIST_START, _OUTPUT_LIST_START)}
    stripped_user = _OUTPUT_REMINDER.sub("", final_user)
    if style == "xml":
        inputs = _xml_sections(stripped_user, input_names)
    else:
        inputs = _chat_sections(stripped_user, input_names)

    return PromptView(
        style=style,
        output_fields=output_fields,
        inputs=inputs,
        demos=demos,
        tools=_tools(system),
        observations=len(_OBSERVATION.findall(inputs.get("trajectory", ""))),
        final_user_text=stripped_user.strip(),
        response_schema=schema,
    )
