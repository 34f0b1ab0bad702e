"""One call's payload (messages, options, outputs, usage): what the ring keeps of it, and the
payload built for a viewer that asks.

The ring keeps the plain containers DSPy built for the call (the message list, the call's
options, the outputs, the usage dict: strings and numbers in lists and dicts, most of them in
DSPy's own history too) and the LM's options dict, never the LM, the request or result objects
or an exception. Copying them instead cost 3-5 µs per call in a real run (marshal touched each
object once more, out of cache); holding them costs nothing. Options that are not plain (a
class such as JSONAdapter's response_format) are made plain at once. `materialize` runs on
the server thread, on demand. The server redacts the payload, like everything it sends
(redact.py), with the credentials `secrets_of` finds in the call's options added to those it
knows.
"""

from __future__ import annotations

from typing import Any

from dspy_top.instrumentation.redact import secret_values

_ATOMS = (str, int, float, bool, type(None))
_ATOM_TYPES = frozenset(_ATOMS)
_MAX_DEPTH = 40
_MAX_REPR = 2000
# What one payload is reckoned at per token, when its call's token counts are known.
BYTES_PER_TOKEN = 4


def plain_options(options: dict) -> dict:
    """A call's options as they are when every value is a string, number or None; else made plain."""
    return options if _ATOM_TYPES.issuperset(map(type, options.values())) else plain(options)


# LM options dicts already found plain, by id, with their length then: an LM's `kwargs` is
# looked at once, not on every call (held here, so an id is not reused while its entry lives).
_plain_lm_options: dict[int, tuple[dict, int]] = {}


def lm_options(lm) -> dict | None:
    """The LM's options (its `kwargs`: temperature, max_tokens, api_base...) as plain data."""
    options = getattr(lm, "kwargs", None)
    if type(options) is not dict:
        return None
    seen = _plain_lm_options.get(id(options))
    if seen is not None and seen[0] is options and seen[1] == len(options):
        return options
    if not _ATOM_TYPES.issuperset(map(type, options.values())):
        return plain(options)
    if len(_plain_lm_options) >= 256:
        _plain_lm_options.clear()
    _plain_lm_options[id(options)] = (options, len(options))
    return options


def request_messages(request) -> list:
    """The messages of a call DSPy 3.4 made from an explicit lm15 Request."""
    try:
        from dspy.clients.lm15_boundary import history_messages

        return history_messages(request)
    except Exception:
        return [{"role": "user", "content": _text(request)}]


def plain(value: Any, depth: int = 0) -> Any:
    """`value` as strings, numbers, lists and dicts only; anything else by its data or its repr."""
    if type(value) in _ATOM_TYPES:
        return value
    if depth > _MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        return {k if type(k) in _ATOM_TYPES else _text(k): plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, _ATOMS):  # subclasses of str, int, float: their plain value
        for atom in _ATOMS[:3]:
            if isinstance(value, atom):
                return atom(value)
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    dump = getattr(value, "model_dump", None)  # pydantic models (litellm's usage and tool calls)
    if callable(dump):
        try:
            return plain(dump(), depth + 1)
        except Exception:
            pass
    return _text(value)


def text_size(value: Any, depth: int = 0) -> int:
    """About how many bytes the text in a payload part takes (strings counted by length)."""
    if type(value) is str:
        return len(value)
    if depth > _MAX_DEPTH or value is None:
        return 0
    if isinstance(value, dict):
        return sum(text_size(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(text_size(v, depth + 1) for v in value)
    return 8


def _text(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _MAX_REPR else text[:_MAX_REPR] + "…"


def materialize(kept: Any) -> dict[str, Any]:
    """The payload of a kept call (recorder.KeptCall); the server redacts it before it leaves."""
    messages = kept.messages
    if not messages:
        messages = [{"role": "user", "content": kept.prompt}] if kept.prompt is not None else []
    payload: dict[str, Any] = {
        "model": kept.model,
        "model_type": kept.model_type,
        "messages": list(messages),
        "options": {**(kept.lm_options or {}), **(kept.call_options or {})},
    }
    if kept.error is None:
        payload["outputs"] = kept.outputs
        payload["usage"] = kept.usage
        payload["cost_usd"] = kept.dspy_cost
        payload["cache_hit"] = bool(kept.cache_hit)
        payload["response_model"] = kept.response_model
        if kept.cost_details:
            payload["cost_details"] = kept.cost_details
    else:
        payload["error"] = kept.error
    return payload


def secrets_of(kept: Any) -> list[str]:
    """Credentials the call's LM and options were given (its `api_key`...), to be redacted wherever they appear."""
    return secret_values(dict(kept.lm_options or {})) + secret_values(dict(kept.call_options or {}))


def redacted(redactor: Any, kept: Any, limit: int) -> dict[str, Any]:
    """`materialize(kept)` redacted, exactly as `redactor.value({"payload": materialize(kept)},
    limit)["payload"]` is, without building the payload first: its names are known to be plain,
    so only its values are walked (a recording does this for every call: about 2 µs less each).
    `kept` is a recorder.KeptCall (a tuple in KEPT_FIELDS order)."""
    (
        _,
        model,
        model_type,
        messages,
        prompt,
        lm_options,
        call_options,
        outputs,
        usage,
        dspy_cost,
        cost_details,
        error,
        cache_hit,
        response_model,
    ) = kept[:14]
    value, text = redactor.value, redactor.text

    def part(item: Any) -> Any:  # as the pass treats a value under a plain name, in the payload's map
        kind = type(item)
        if kind is str:
            return text(item, limit)
        if item is None or kind is int or kind is float or kind is bool:
            return item
        return value(item, limit, 2)

    if not messages:
        messages = [{"role": "user", "content": prompt}] if prompt is not None else []
    out: dict[str, Any] = {
        "model": part(model),
        "model_type": part(model_type),
        "messages": value(list(messages), limit, 2),
        "options": value({**(lm_options or {}), **(call_options or {})}, limit, 2),
    }
    if error is None:
        out["outputs"] = part(outputs)
        out["usage"] = part(usage)
        out["cost_usd"] = part(dspy_cost)
        out["cache_hit"] = bool(cache_hit)
        out["response_model"] = part(response_model)
        if cost_details:
            out["cost_details"] = part(cost_details)
    else:
        out["error"] = part(error)
    return out
