"""Names a call's module by where it sits in the user's program: `RAG.generate_answer.predict`.

Holds also on the copies optimizers make, since names come from the live objects.
"""

from __future__ import annotations


def describe(modules) -> tuple[str, tuple[str, ...]]:
    """Name each module by the attribute its parent holds it in: `RAG.generate_answer.predict`."""
    chain = tuple(type(m).__name__ for m in modules)
    parts = [chain[0]]
    for parent, child in zip(modules, modules[1:]):
        parts.append(_attribute_name(parent, child) or type(child).__name__)
    return ".".join(parts), chain


def holds(parent: object, child: object) -> bool:
    """Does `parent` hold `child` as an attribute (directly, or in a list, tuple or dict)?"""
    return _attribute_name(parent, child) is not None


def _attribute_name(parent: object, child: object) -> str | None:
    try:
        items = vars(parent).items()
    except TypeError:
        return None
    for name, value in items:
        if value is child:
            return name
        if isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                if item is child:
                    return f"{name}[{index}]"
        elif isinstance(value, dict):
            for key, item in value.items():
                if item is child:
                    return f"{name}[{key}]"
    return None
