"""Builds one call's full payload (messages, outputs, options, usage) for a viewer that asks.

The hot path keeps only references; this runs on the server thread, on demand.
"""

from __future__ import annotations

from typing import Any

from dspy_top.instrumentation.redact import known_secrets, scrub


def materialize(source: tuple[Any, Any, Any, BaseException | None]) -> dict[str, Any]:
    lm, call, result, error = source
    lm_kwargs = dict(getattr(lm, "kwargs", {}) or {})
    secrets = known_secrets([lm_kwargs.get("api_key")])
    payload: dict[str, Any] = {
        "model": getattr(lm, "model", None),
        "model_type": getattr(lm, "model_type", None),
        "messages": scrub(_messages(call), secrets),
        "options": scrub({**lm_kwargs, **dict(getattr(call, "kwargs", {}) or {})}, secrets),
    }
    if result is not None:
        payload["outputs"] = scrub(result.outputs, secrets)
        payload["usage"] = scrub(result.usage, secrets)
        payload["cost_usd"] = result.cost
        payload["cache_hit"] = bool(result.cache_hit)
        payload["response_model"] = result.response_model
        details = getattr(result, "cost_details", None)
        if details:
            payload["cost_details"] = scrub(details, secrets)
    if error is not None:
        payload["error"] = scrub(f"{type(error).__name__}: {error}", secrets)
    return payload


def _messages(call: Any) -> list[Any]:
    if call is None:
        return []
    request = getattr(call, "request", None)
    if request is not None:
        try:
            from dspy.clients.lm15_boundary import history_messages

            return history_messages(request)
        except Exception:
            return [{"role": "user", "content": repr(request)}]
    messages = getattr(call, "messages", None) or (getattr(call, "legacy", None) or {}).get("messages")
    if messages:
        return list(messages)
    prompt = getattr(call, "prompt", None)
    return [{"role": "user", "content": prompt}] if prompt is not None else []
