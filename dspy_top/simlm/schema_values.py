"""Make a value that satisfies a JSON schema, for structured output fields and tool arguments."""

import random

from dspy_top.simlm.wording import phrase

_MAX_DEPTH = 6


def _resolve(schema: dict, defs: dict) -> dict:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/")):
        return defs.get(ref.rsplit("/", 1)[-1], {})
    return schema


def _pick_variant(schema: dict) -> dict | None:
    for key in ("anyOf", "oneOf", "allOf"):
        variants = schema.get(key)
        if isinstance(variants, list) and variants:
            concrete = [v for v in variants if isinstance(v, dict) and v.get("type") != "null"]
            return concrete[0] if concrete else variants[0]
    return None


def _number(schema: dict, draw: random.Random, integer: bool):
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0 if integer else 0.0))
    high = schema.get("maximum", schema.get("exclusiveMaximum", low + (10 if integer else 1.0)))
    if "exclusiveMinimum" in schema and "minimum" not in schema:
        low += 1 if integer else 1e-3
    if "exclusiveMaximum" in schema and "maximum" not in schema:
        high -= 1 if integer else 1e-3
    if integer:
        return draw.randint(int(low), max(int(low), int(high)))
    return round(draw.uniform(float(low), float(max(low, high))), 2)


def example_value(schema: dict, draw: random.Random, topic: str, defs: dict | None = None, depth: int = 0):
    """A value valid under ``schema`` ($ref, anyOf, enum, objects, arrays and scalars)."""
    defs = {**(defs or {}), **schema.get("$defs", {}), **schema.get("definitions", {})}
    schema = _resolve(schema, defs)
    if depth > _MAX_DEPTH:
        return None
    variant = _pick_variant(schema)
    if variant is not None:
        return example_value(variant, draw, topic, defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return draw.choice(schema["enum"])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        properties = schema.get("properties") or {}
        if properties:
            required = schema.get("required")
            names = [n for n in properties if required is None or n in required] or list(properties)
            return {n: example_value(properties[n], draw, topic, defs, depth + 1) for n in names}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            return {"key": example_value(extra, draw, topic, defs, depth + 1)}
        return {"topic": topic}
    if kind == "array":
        if isinstance(schema.get("prefixItems"), list):
            return [example_value(s, draw, topic, defs, depth + 1) for s in schema["prefixItems"]]
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        count = max(schema.get("minItems", 0), draw.randint(1, 3))
        if "maxItems" in schema:
            count = min(count, schema["maxItems"])
        return [example_value(items, draw, topic, defs, depth + 1) for _ in range(count)]
    if kind == "integer":
        return _number(schema, draw, integer=True)
    if kind == "number":
        return _number(schema, draw, integer=False)
    if kind == "boolean":
        return draw.random() < 0.5
    if kind == "null":
        return None
    return phrase(topic, draw)
