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

import math
from typing import Any

from dspy_top.instrumentation.redact import MAX_ITEMS, secret_values

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


# The credentials found in an options dict seen before, by its id: (the dict, a copy of it then,
# what was found). An LM's options come with each of its calls; they are looked at again only
# when they changed (held here, so an id is not reused while its entry lives).
_option_secrets: dict[int, tuple[dict, dict, list[str]]] = {}


def secrets_in(options: Any) -> list[str]:
    """The credentials in one options map (an LM's `kwargs`, a call's options)."""
    if not options:
        return []
    seen = _option_secrets.get(id(options))
    if seen is not None and seen[0] is options and seen[1] == options:
        return seen[2]
    found = secret_values(dict(options))
    if type(options) is dict and len(options) <= 64:
        if len(_option_secrets) >= 256:
            _option_secrets.clear()
        _option_secrets[id(options)] = (options, dict(options), found)
    return found


def secrets_of(kept: Any) -> list[str]:
    """Credentials the call's LM and options were given (its `api_key`...), to be redacted wherever they appear."""
    return secrets_in(kept.lm_options) + secrets_in(kept.call_options)


# Parts of a payload remembered by value (Redactor.parts), up to these bounds: a message's text
# longer than this is remembered by `Redactor.text` alone.
_PART_TEXT = 8192
_SHORT_TEXT = 256  # a shorter message's text is remembered by `Redactor.text` already
_PARTS_KEPT = 1024
_NUMBER_TYPES = frozenset((int, float, bool, type(None)))


def redacted(redactor: Any, kept: Any, limit: int) -> dict[str, Any]:
    """`materialize(kept)` redacted, exactly as `redactor.value({"payload": materialize(kept)},
    limit)["payload"]` is, without building the payload first: its names are known to be plain,
    so only its values are walked (a recording does this for every call). A module's messages
    and an LM's options come again with every call: each distinct one is redacted once
    (`Redactor.parts`, cleared when the known secrets change), and the result is shared by the
    payloads that hold it (they are encoded, never changed); each kind of part under a key of its
    own kind, so that no part is ever taken for another. `kept` is a recorder.KeptCall (a tuple in
    KEPT_FIELDS order)."""
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
    value, text, parts = redactor.value, redactor.text, redactor.parts

    def part(item: Any) -> Any:  # as the pass treats a value under a plain name, in the payload's map
        kind = type(item)
        if kind is str:
            return text(item, limit)
        if item is None or kind is int or kind is float or kind is bool:
            return item
        if kind is dict and len(item) <= 64:
            return plain_map(item)
        if kind is list and len(item) == 1 and type(item[0]) is str:  # the usual outputs: one text
            return [text(item[0], limit)]
        return value(item, limit, 2)

    def plain_map(item: dict) -> Any:
        """A map of plain values (options, usage, cost details) redacted once per distinct one."""
        types = tuple(map(type, item.values()))
        if _NUMBER_TYPES.issuperset(types):  # numbers only (usage): its names decide
            names = ("names", *item)
            verdict = parts.get(names)
            if verdict is None:
                verdict = all(type(name) is str and text(name, 1024) == name for name in item)
                remember(names, verdict)
            return dict(item) if verdict else value(item, limit, 2)
        if not _ATOM_TYPES.issuperset(types):
            return value(item, limit, 2)
        key = ("map", limit, tuple(item.items()), types)
        if float in types and 0.0 in item.values():  # -0.0 == 0.0 and hashes alike: the sign tells
            key += (tuple([math.copysign(1.0, v) for v in item.values() if type(v) is float]),)
        done = parts.get(key)
        if done is None:
            done = value(item, limit, 2)
            remember(key, done)
        return done

    def remember(key: Any, done: Any) -> None:  # bounded: begun again once full
        if len(parts) >= _PARTS_KEPT:
            parts.clear()
        parts[key] = done

    if not messages:
        messages = [{"role": "user", "content": prompt}] if prompt is not None else []
    out_messages: list[Any] = []
    if type(messages) is list and len(messages) <= MAX_ITEMS:
        for message in messages:
            if type(message) is dict and len(message) == 2:
                role, content = message.get("role"), message.get("content")
                if type(role) is str and type(content) is str and _SHORT_TEXT < len(content) <= _PART_TEXT:
                    key = ("message", limit, role, content)
                    done = parts.get(key)
                    if done is None:
                        done = {"role": text(role, limit), "content": text(content, limit)}
                        remember(key, done)
                    out_messages.append(done)
                    continue
            out_messages.append(value([message], limit, 2)[0])
    else:
        out_messages = value(list(messages), limit, 2)
    out: dict[str, Any] = {
        "model": part(model),
        "model_type": part(model_type),
        "messages": out_messages,
        "options": part({**(lm_options or {}), **(call_options or {})}),
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
