"""One call's payload (messages, options, outputs, usage): kept as bytes, built for a viewer that asks.

When a call returns, `snapshot` marshals what its payload shows into one bytes object: plain
data only (strings, numbers, lists, dicts), copied, so the program may drop or change its LM,
messages and results at once, and the garbage collector never has to look at it. Marshal is
one C call (about 1 µs for a typical prompt); anything it cannot take is made plain first.
`materialize` runs on the server thread, on demand.
"""

from __future__ import annotations

import marshal
from typing import Any

from dspy_top.instrumentation.redact import known_secrets, scrub

_ATOMS = (str, int, float, bool, type(None))
_MAX_DEPTH = 40
_MAX_REPR = 2000


def snapshot(messages, prompt, lm_options, call_options, outputs, usage, cost_details) -> bytes:
    """The payload's parts as plain bytes (options: the LM's, then the call's, which win)."""
    parts = (messages, prompt, lm_options, call_options, outputs, usage, cost_details)
    try:
        return marshal.dumps(parts)
    except (ValueError, TypeError, RecursionError):
        # A value marshal does not take (a class, a pydantic model, a dict subclass, ...).
        return marshal.dumps(plain(parts))


def snapshot_request(request, lm_options, call_options, outputs, usage, cost_details) -> bytes:
    """The payload of a call DSPy 3.4 made from an explicit lm15 Request: its messages read off it."""
    try:
        from dspy.clients.lm15_boundary import history_messages

        messages = history_messages(request)
    except Exception:
        messages = [{"role": "user", "content": repr(request)[:_MAX_REPR]}]
    return snapshot(messages, None, lm_options, call_options, outputs, usage, cost_details)


def plain(value: Any, depth: int = 0) -> Any:
    """`value` as strings, numbers, lists and dicts only; anything else by its data or its repr."""
    if type(value) in _ATOMS:
        return value
    if depth > _MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        return {k if type(k) in _ATOMS else _text(k): plain(v, depth + 1) for k, v in value.items()}
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


def _text(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _MAX_REPR else text[:_MAX_REPR] + "…"


def materialize(kept: Any) -> dict[str, Any]:
    """The payload of a kept call (recorder.KeptCall), with secrets removed."""
    messages, prompt, lm_options, call_options, outputs, usage, cost_details = (
        marshal.loads(kept.blob) if kept.blob is not None else (None,) * 7)
    options = {**(lm_options or {}), **(call_options or {})}
    secrets = known_secrets([options.get("api_key")])
    if not messages:
        messages = [{"role": "user", "content": prompt}] if prompt is not None else []
    payload: dict[str, Any] = {
        "model": kept.model,
        "model_type": kept.model_type,
        "messages": scrub(messages, secrets),
        "options": scrub(options, secrets),
    }
    if kept.error is None:
        payload["outputs"] = scrub(outputs, secrets)
        payload["usage"] = scrub(usage, secrets)
        payload["cost_usd"] = kept.dspy_cost
        payload["cache_hit"] = bool(kept.cache_hit)
        payload["response_model"] = kept.response_model
        if cost_details:
            payload["cost_details"] = scrub(cost_details, secrets)
    else:
        payload["error"] = scrub(kept.error, secrets)
    return payload
