"""Builds one call's full payload (messages, outputs, options, usage) for a viewer that asks.

The hot path keeps only references; this runs on the server thread, on demand. The server
redacts the payload, like everything it sends (redact.py), with the credentials
`secrets_of` finds in the call's LM added to those it knows.
"""

from __future__ import annotations

from typing import Any

from dspy_top.instrumentation.redact import secret_values


def materialize(record: Any) -> dict[str, Any]:
    """The payload of a kept call (recorder.KeptCall), from the parts of DSPy's call and result it references."""
    lm = record.lm
    payload: dict[str, Any] = {
        "model": getattr(lm, "model", None),
        "model_type": getattr(lm, "model_type", None),
        "messages": _messages(record),
        "options": {**_lm_options(lm), **dict(record.options or {})},
    }
    if record.error is None:
        payload["outputs"] = record.outputs
        payload["usage"] = record.usage
        payload["cost_usd"] = record.dspy_cost
        payload["cache_hit"] = bool(record.cache_hit)
        payload["response_model"] = record.response_model
        if record.cost_details:
            payload["cost_details"] = record.cost_details
    else:
        error = record.error
        try:
            payload["error"] = f"{type(error).__name__}: {error}"
        except Exception:
            payload["error"] = type(error).__name__
    return payload


def secrets_of(record: Any) -> list[str]:
    """Credentials the call's LM was given (its `api_key`...), to be redacted wherever they appear."""
    options = _lm_options(record.lm)
    return secret_values(options) + secret_values(dict(record.options or {}))


def _lm_options(lm: Any) -> dict[str, Any]:
    return dict(getattr(lm, "kwargs", {}) or {})


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
