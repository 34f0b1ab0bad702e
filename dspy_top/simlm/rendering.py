"""Write field values in the reply format the requesting DSPy adapter parses."""

import json
from xml.sax.saxutils import escape


def _chat_value(value) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, int, float)):
        return str(value)  # Python spelling: DSPy parses "True" and "42" for bool/int.
    return json.dumps(value, ensure_ascii=False)


def _xml_value(value) -> str:
    if isinstance(value, dict):
        return "".join(f"<{k}>{_xml_value(v)}</{k}>" for k, v in value.items())
    if isinstance(value, list):
        return "".join(f"<item>{_xml_value(v)}</item>" for v in value)
    if value is None:
        return ""
    return escape(_chat_value(value))


def render_chat(values: dict) -> str:
    """ChatAdapter: a ``[[ ## field ## ]]`` section per field, then ``[[ ## completed ## ]]``."""
    sections = [f"[[ ## {name} ## ]]\n{_chat_value(value)}" for name, value in values.items()]
    sections.append("[[ ## completed ## ]]")
    return "\n\n".join(sections)


def render_json(values: dict) -> str:
    """JSONAdapter (and any json_object/json_schema request): one JSON object."""
    return json.dumps(values, ensure_ascii=False, indent=2)


def render_xml(values: dict) -> str:
    """XMLAdapter: one element per field, nested elements for lists and objects."""
    return "\n\n".join(f"<{name}>\n{_xml_value(value)}\n</{name}>" for name, value in values.items())


def render(style: str, values: dict) -> str:
    if style == "json":
        return render_json(values)
    if style == "xml":
        return render_xml(values)
    return render_chat(values)
