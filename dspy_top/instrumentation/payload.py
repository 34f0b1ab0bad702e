"""Builds one call's full payload (messages, outputs, options, usage) for a viewer that asks.

The hot path keeps only references; this runs on the server thread, on demand.
"""

from __future__ import annotations

from typing import Any

from dspy_top.instrumentation.redact import known_secrets, scrub


def materialize(record: Any) -> dict[str, Any]:
    """The payload of a kept call (recorder.KeptCall), from the parts of DSPy's call and result it references."""
    lm = record.lm
    lm_kwargs = dict(getattr(lm, "kwargs", {}) or {})
    secrets = known_secrets([lm_kwargs.get("api_key")])
    payload: dict[str, Any] = {
        "model": getattr(lm, "model", None),
        "model_type": getattr(lm, "model_type", None),
        "messages": scrub(_messages(record), secrets),
        "options": scrub({**lm_kwargs, **dict(record.options or {})}, secrets),
    }
    if record.error is None:
        payload["outputs"] = scrub(record.outputs, secrets)
        payload["usage"] = scrub(record.usage, secrets)
        payload["cost_usd"] = record.dspy_cost
        payload["cache_hit"] = bool(record.cache_hit)
        payload["response_model"] = record.response_model
        if record.cost_details:
            payload["cost_details"] = scrub(record.cost_details, secrets)
    else:
        error = record.error
        payload["error"] = scrub(f"{type(error).__name__}: {error}", secrets)
    return payload


def _messages(record: Any) -> list[Any]:
    request = record.request
    if request is not None:
        try:
            from dspy.clients.lm15_boundary import history_messages

            return history_messages(request)
        except Exception:
            return [{"role": "user", "content": repr(request)}]
    if record.messages:
        return list(record.messages)
    return [{"role": "user", "content": record.prompt}] if record.prompt is not None else []
