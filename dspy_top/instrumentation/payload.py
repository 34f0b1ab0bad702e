"""Builds one call's full payload (messages, outputs, options, usage) for a viewer that asks.

The hot path keeps only references; this runs on the server thread, on demand.
"""

from __future__ import annotations

from typing import Any

from dspy_top.instrumentation.redact import known_secrets, scrub


def materialize(record: Any) -> dict[str, Any]:
    """The payload of a kept CallRecord, from the parts of DSPy's call and result it references."""
    lm = getattr(record, "lm", None)
    lm_kwargs = dict(getattr(lm, "kwargs", {}) or {})
    secrets = known_secrets([lm_kwargs.get("api_key")])
    payload: dict[str, Any] = {
        "model": getattr(lm, "model", None),
        "model_type": getattr(lm, "model_type", None),
        "messages": scrub(_messages(record), secrets),
        "options": scrub({**lm_kwargs, **dict(getattr(record, "options", None) or {})}, secrets),
    }
    if record.error is None:
        payload["outputs"] = scrub(getattr(record, "outputs", None), secrets)
        payload["usage"] = scrub(getattr(record, "usage", None), secrets)
        payload["cost_usd"] = getattr(record, "dspy_cost", None)
        payload["cache_hit"] = bool(record.cache_hit)
        payload["response_model"] = record.response_model
        details = getattr(record, "cost_details", None)
        if details:
            payload["cost_details"] = scrub(details, secrets)
    else:
        error = record.error
        payload["error"] = scrub(f"{type(error).__name__}: {error}", secrets)
    return payload


def _messages(record: Any) -> list[Any]:
    request = getattr(record, "request", None)
    if request is not None:
        try:
            from dspy.clients.lm15_boundary import history_messages

            return history_messages(request)
        except Exception:
            return [{"role": "user", "content": repr(request)}]
    messages = getattr(record, "messages", None)
    if messages:
        return list(messages)
    prompt = getattr(record, "prompt", None)
    return [{"role": "user", "content": prompt}] if prompt is not None else []
