"""Decide what kind of value an output field wants, from DSPy's annotation and note text."""

import ast
import json
from dataclasses import dataclass

from dspy_top.simlm.prompt import OutputField

_SCALARS = {"str": "str", "int": "int", "float": "float", "bool": "bool"}
_CHOICE_NOTE = "must exactly match (no extra characters) one of: "
_ENUM_NOTE = "must be one of: "
_SCHEMA_NOTE = "must adhere to the JSON schema: "
_SCHEMA_SCALARS = {"string": "str", "integer": "int", "number": "float", "boolean": "bool"}


@dataclass(frozen=True)
class FieldType:
    """kind is "str", "int", "float", "bool", "choice" (one of choices) or "json" (schema)."""

    kind: str
    choices: tuple = ()
    schema: dict | None = None


def _literal_choices(annotation: str) -> tuple | None:
    if not (annotation.startswith("Literal[") and annotation.endswith("]")):
        return None
    try:
        values = ast.literal_eval("(" + annotation[len("Literal[") : -1] + ",)")
    except (ValueError, SyntaxError):
        return None
    return tuple(values) or None


def _from_schema(schema: dict) -> FieldType:
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return FieldType("choice", choices=tuple(schema["enum"]))
    kind = _SCHEMA_SCALARS.get(schema.get("type"))
    if kind and not schema.get("$ref"):
        return FieldType(kind)
    return FieldType("json", schema=schema)


def field_type(output: OutputField, response_schema: dict | None = None) -> FieldType:
    annotation = output.annotation.strip()
    if annotation in _SCALARS:
        return FieldType(_SCALARS[annotation])
    choices = _literal_choices(annotation)
    if choices:
        return FieldType("choice", choices=choices)
    note = output.note
    if note.startswith(_CHOICE_NOTE):
        return FieldType("choice", choices=tuple(note[len(_CHOICE_NOTE) :].split("; ")))
    if note.startswith(_ENUM_NOTE):
        return FieldType("choice", choices=tuple(note[len(_ENUM_NOTE) :].split("; ")))
    if note.startswith(_SCHEMA_NOTE):
        try:
            return FieldType("json", schema=json.loads(note[len(_SCHEMA_NOTE) :]))
        except ValueError:
            pass
    prop = ((response_schema or {}).get("properties") or {}).get(output.name)
    if isinstance(prop, dict):
        if prop.get("$ref") or "$defs" in (response_schema or {}):
            # Keep the $defs a nested model's $ref points into.
            return _from_schema({**prop, "$defs": response_schema.get("$defs", {})})
        return _from_schema(prop)
    return FieldType("str")
