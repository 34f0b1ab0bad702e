"""The hot path: wrappers around DSPy's LM execution that record every call exactly once.

DSPy 3.4 runs every LM call, on both engines, sync and async, through
`dspy.clients.execution.execute/aexecute`, which return a `CallResult` holding the usage,
the priced cost and the cache-hit flag. Wrapping those two sees each call once with exact
numbers, on whichever thread or task makes it. An unfamiliar DSPy gets `install_fallback`:
wrappers on `BaseLM.__call__`/`acall` that read the history entry each call records.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from dataclasses import dataclass
from typing import Any

from dspy_top.instrumentation.recorder import CallRecord

# The call being executed on this thread or task: retries and partial usage land on it.
CURRENT: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar("dspy_top_call", default=None)


def install_execution(hooks, execution) -> None:
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
            hooks.finish_error(record, lm, call, exc)
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
            hooks.finish_error(record, lm, call, exc)
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
                record.partial_usage = {"prompt_tokens": sum(u[0] for u in usages),
                                        "completion_tokens": sum(u[1] for u in usages)}
            except Exception:
                hooks.recorder.count_internal_error()
        return original_account(lm, results, primary)

    hooks.patch(execution, "execute", execute)
    hooks.patch(execution, "aexecute", aexecute)
    hooks.patch(execution, "_delay", _delay)
    hooks.patch(execution, "_account_failed_call", _account_failed_call)



def install_fallback(hooks) -> None:
    """Slower, still exact while history is on: bracket BaseLM calls, read the entry they record."""
    from dspy.clients.base_lm import BaseLM

    original_call, original_acall = BaseLM.__dict__["__call__"], BaseLM.__dict__["acall"]
    original_update = BaseLM.__dict__["update_history"]

    def finish(record, lm, entry, exc):
        if exc is not None:
            hooks.finish_error(record, lm, None, exc)
            return
        if entry is None:  # history disabled: the call is counted, its usage is not known
            hooks.recorder.finish(record)
            return
        response = entry.get("response")
        hit = bool(getattr(response, "cache_hit", False))
        result = _EntryResult(entry.get("usage") or {}, entry.get("cost"), hit, entry.get("response_model"),
                              entry.get("outputs"))
        hooks.finish_ok(record, lm, _EntryCall(entry), result)

    @functools.wraps(original_acall)
    async def acall(lm, *args, **kwargs):
        if CURRENT.get() is not None:
            return await original_acall(lm, *args, **kwargs)
        record = hooks.begin(lm)
        if record is None:
            return await original_acall(lm, *args, **kwargs)
        token = CURRENT.set(record)
        try:
            result = await original_acall(lm, *args, **kwargs)
        except BaseException as exc:
            CURRENT.reset(token)
            finish(record, lm, None, exc)
            raise
        CURRENT.reset(token)
        finish(record, lm, _ENTRIES.pop(record.id, None), None)
        return result

    def update_history(lm, entry):
        record = CURRENT.get()
        if record is not None:
            _ENTRIES[record.id] = entry
        return original_update(lm, entry)

    hooks.patch(BaseLM, "__call__", _fallback_call(original_call, hooks, finish))
    hooks.patch(BaseLM, "acall", acall)
    hooks.patch(BaseLM, "update_history", update_history)

# --- Evaluate, compile, tools: rare, so plain wrappers --------------------------------



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
    def _get_stream_completion_fn(request, cache_kwargs, *args, **kwargs):
        try:
            # Only a streamed request may carry stream_options (OpenAI refuses it otherwise).
            if (hooks.setting("send_stream") is not None and isinstance(request, dict)
                    and "stream_options" not in request):
                request["stream_options"] = {"include_usage": True}
        except Exception:
            hooks.recorder.count_internal_error()
        return original(request, cache_kwargs, *args, **kwargs)

    hooks.patch(lm_module, "_get_stream_completion_fn", _get_stream_completion_fn)



_ENTRIES: dict[int, dict] = {}


def _fallback_call(original_call, hooks, finish):
    @functools.wraps(original_call)
    def __call__(lm, *args, **kwargs):
        if CURRENT.get() is not None:
            return original_call(lm, *args, **kwargs)
        record = hooks.begin(lm)
        if record is None:
            return original_call(lm, *args, **kwargs)
        token = CURRENT.set(record)
        try:
            result = original_call(lm, *args, **kwargs)
        except BaseException as exc:
            CURRENT.reset(token)
            _ENTRIES.pop(record.id, None)
            finish(record, lm, None, exc)
            raise
        CURRENT.reset(token)
        finish(record, lm, _ENTRIES.pop(record.id, None), None)
        return result

    return __call__


@dataclass
class _EntryResult:
    usage: dict
    cost: float | None
    cache_hit: bool
    response_model: str | None
    outputs: Any


class _EntryCall:
    """Just enough of a PreparedCall for the payload, rebuilt from a history entry."""

    def __init__(self, entry: dict) -> None:
        self.messages = entry.get("messages")
        self.prompt = entry.get("prompt")
        self.kwargs = entry.get("kwargs") or {}
        self.legacy = {"messages": entry.get("messages")}
        self.request = None


def execution_is_familiar(execution) -> bool:
    try:
        from dspy.clients.call_result import CallResult

        fields = set(getattr(CallResult, "__dataclass_fields__", {}))
        if not {"usage", "cost", "cache_hit", "outputs", "response_model"} <= fields:
            return False
        for name, params in (("execute", ["lm", "call"]), ("aexecute", ["lm", "call"]),
                             ("_delay", ["exc", "attempt"]), ("_account_failed_call", ["lm", "results", "primary"])):
            function = getattr(execution, name, None)
            if function is None or list(inspect.signature(function).parameters) != params:
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
