"""The hot path: wrappers around DSPy's LM execution that record every call exactly once.

DSPy 3.4 runs every LM call, on both engines, sync and async, through
`dspy.clients.execution.execute/aexecute`, which return a `CallResult` holding the usage,
the priced cost and the cache-hit flag. Wrapping those two sees each call once with exact
numbers, on whichever thread or task makes it. Older DSPy (2.6 to 3.3), or one whose
execution layer looks different, gets the wrappers in `legacy_lm` instead.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from typing import Any

from dspy_top.instrumentation import payload
from dspy_top.instrumentation.call_record import CallRecord

# The call being executed on this thread or task: retries and partial usage land on it.
CURRENT: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar("dspy_top_call", default=None)


def install_execution(hooks, execution) -> None:
    """Wrap DSPy 3.4's execute/aexecute (and the retry helpers they call).

    Each wrapper has its original's exact signature (`execution_is_familiar` checks it), so
    arguments bind, and wrong ones fail, exactly as without dspy-top."""
    original_execute, original_aexecute = execution.execute, execution.aexecute
    original_delay, original_account = execution._delay, execution._account_failed_call

    @functools.wraps(original_execute)
    def execute(lm, call):
        if CURRENT.get() is not None:  # a nested execute (legacy forward): counted once, outside
            return original_execute(lm, call)
        record = hooks.begin(lm)
        if record is None:
            return original_execute(lm, call)
        token = CURRENT.set(record)
        try:
            result = original_execute(lm, call)
        except BaseException as exc:
            CURRENT.reset(token)
            hooks.finish_error(record, lm, exc, _sent(lm, call, hooks))
            raise
        CURRENT.reset(token)
        hooks.finish_ok(record, lm, call, result)
        return result

    @functools.wraps(original_aexecute)
    async def aexecute(lm, call):
        if CURRENT.get() is not None:
            return await original_aexecute(lm, call)
        record = hooks.begin(lm)
        if record is None:
            return await original_aexecute(lm, call)
        token = CURRENT.set(record)
        try:
            result = await original_aexecute(lm, call)
        except BaseException as exc:
            CURRENT.reset(token)
            hooks.finish_error(record, lm, exc, _sent(lm, call, hooks))
            raise
        CURRENT.reset(token)
        hooks.finish_ok(record, lm, call, result)
        return result

    @functools.wraps(original_delay)
    def _delay(exc, attempt):
        record = CURRENT.get()
        if record is not None:
            record.retries += 1
        return original_delay(exc, attempt)

    @functools.wraps(original_account)
    def _account_failed_call(lm, results, primary):
        record = CURRENT.get()
        if record is not None:
            try:
                usages = [usage_tokens(getattr(result, "usage", None) or {}) for result in results]
                record.partial_usage = {
                    "prompt_tokens": sum(u[0] for u in usages),
                    "completion_tokens": sum(u[1] for u in usages),
                }
            except Exception:
                hooks.recorder.count_internal_error()
        return original_account(lm, results, primary)

    hooks.patch(execution, "execute", execute)
    hooks.patch(execution, "aexecute", aexecute)
    hooks.patch(execution, "_delay", _delay)
    hooks.patch(execution, "_account_failed_call", _account_failed_call)


def _sent(lm, call, hooks) -> tuple | None:
    """The payload's parts for a failed call: what it sent."""
    try:
        if call.request is not None:
            messages, prompt = payload.request_messages(call.request), None
        else:
            messages, prompt = call.messages or call.legacy.get("messages"), call.prompt
        options = payload.plain_options(call.kwargs) if call.kwargs else call.kwargs
        return messages, prompt, payload.lm_options(lm), options, None, None, None
    except Exception:
        hooks.recorder.count_internal_error()
        return None


def install_stream_usage(hooks) -> None:
    """Streamed litellm calls: ask the provider for usage, as DSPy does only under track_usage.

    Without it litellm estimates streamed usage with a local tokenizer, which is not what
    the provider bills. The option adds one usage-only chunk at the end of the stream and
    changes no output; DSPy already handles it when track_usage is on.
    """
    from dspy.clients import lm as lm_module

    original = lm_module._get_stream_completion_fn
    if list(inspect.signature(original).parameters)[:2] != ["request", "cache_kwargs"]:
        return

    @functools.wraps(original)
    def _get_stream_completion_fn(*args, **kwargs):
        try:
            request = args[0] if args else kwargs.get("request")
            # Only a streamed request may carry stream_options (OpenAI refuses it otherwise).
            if (
                hooks.setting("send_stream") is not None
                and isinstance(request, dict)
                and "stream_options" not in request
            ):
                request["stream_options"] = {"include_usage": True}
        except Exception:
            hooks.recorder.count_internal_error()
        return original(*args, **kwargs)

    hooks.patch(lm_module, "_get_stream_completion_fn", _get_stream_completion_fn)


# The signatures the execution wrappers are written against: any other and they are not installed.
_EXECUTION_SIGNATURES = {
    "execute": ("lm", "call"),
    "aexecute": ("lm", "call"),
    "_delay": ("exc", "attempt"),
    "_account_failed_call": ("lm", "results", "primary"),
}


def binds_like(function, names: tuple[str, ...]) -> bool:
    """True if `function` takes exactly these parameters, positional or keyword, none defaulted:
    then a wrapper written `def f(<names>)` binds any call, and fails any call, the same way."""
    parameters = inspect.signature(function, follow_wrapped=False).parameters.values()
    return tuple(p.name for p in parameters) == names and all(
        p.kind is p.POSITIONAL_OR_KEYWORD and p.default is p.empty for p in parameters
    )


def execution_is_familiar(execution) -> bool:
    try:
        from dspy.clients.call_result import CallResult

        fields = set(getattr(CallResult, "__dataclass_fields__", {}))
        if not {"usage", "cost", "cache_hit", "outputs", "response_model"} <= fields:
            return False
        for name, names in _EXECUTION_SIGNATURES.items():
            function = getattr(execution, name, None)
            if function is None or not binds_like(function, names):
                return False
        return inspect.iscoroutinefunction(execution.aexecute)
    except Exception:
        return False


def usage_tokens(usage: dict) -> tuple[int, int, int, int]:
    """(prompt, completion, cached, reasoning) from an OpenAI-shaped usage dict."""
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    if type(prompt) is not int:
        prompt = _int(prompt)
    if type(completion) is not int:
        completion = _int(completion)
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cached = _int(_get(prompt_details, "cached_tokens")) if prompt_details else 0
    reasoning = _int(_get(completion_details, "reasoning_tokens")) if completion_details else 0
    return prompt, completion, cached, reasoning


def _get(container: Any, name: str) -> Any:
    if isinstance(container, dict):
        return container.get(name)
    return getattr(container, name, None)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
