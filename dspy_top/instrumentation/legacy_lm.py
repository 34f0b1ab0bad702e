"""LM calls on DSPy 2.6 to 3.3, and on any DSPy whose execution layer is unfamiliar.

These versions have no single function every call runs through, so a call is bracketed at
`BaseLM.__call__`/`acall` (and at DummyLM's own, where it has them) and its numbers are
read where DSPy itself reads them: the provider's response in `BaseLM._process_lm_response`
(2.6 to 3.3), the typed response in `_finalize_lm_response` (3.3), or, as a last resort, the
history entry the call records. The first two see every call, history on or off.

Two things those versions do not say, found another way: a cache hit is DSPy's cache
returning a response (`Cache.get`; DSPy 2.6 sets no flag on it), and retries are the extra
HTTP requests sent to the same URL inside the call (httpx, under litellm and the OpenAI
SDK alike, whichever of them retries).

Every wrapper takes `(*args, **kwargs)` and passes them on untouched, so no keyword of the
program's can collide with a name of ours.
"""

from __future__ import annotations

import contextvars
import functools
from typing import Any

from dspy_top.instrumentation import payload

# The call in progress on this thread or task, and what has been learned about it.
CALL: contextvars.ContextVar[InFlight | None] = contextvars.ContextVar("dspy_top_legacy_call", default=None)

_CALL_PARAMETERS = ("prompt", "messages")


class InFlight:
    """One LM call while it runs: its record, the numbers read so far, its HTTP requests per URL."""

    __slots__ = ("record", "read", "rank", "hit", "requests")

    def __init__(self, record) -> None:
        self.record = record
        self.read: tuple | None = None  # (usage, cost, cache_hit flag, response model, payload parts)
        self.rank = 0  # which reader it came from: a better one replaces it
        self.hit = False  # DSPy's cache answered
        self.requests: dict[str, int] | None = None

    def retries(self) -> int:
        """Extra requests to the endpoint the call used most (a retried request goes to the same URL)."""
        return max(self.requests.values()) - 1 if self.requests else 0


def install(hooks) -> None:
    from dspy.clients.base_lm import BaseLM

    for owner in (BaseLM, _dummy_lm()):
        if owner is None:
            continue
        for name in ("__call__", "acall"):
            original = owner.__dict__.get(name)
            if original is not None:
                hooks.patch(owner, name, _bracket(hooks, original))
    # Rank 3 beats 2 beats 1: a history entry is read only when nothing better saw the call
    # (DSPy 2.6 records it from inside _process_lm_response, so ranks, not order, decide).
    readers = (
        ("_process_lm_response", _provider_response, 3),
        ("_finalize_lm_response", _typed_response, 2),
        ("update_history", _history_entry, 1),
        ("update_global_history", _history_entry, 1),
    )
    for name, read, rank in readers:
        original = BaseLM.__dict__.get(name)
        if original is not None:
            hooks.patch(BaseLM, name, _reader(hooks, original, read, rank))
    for install_one in (_install_cache_hits, _install_requests):
        try:
            install_one(hooks)
        except Exception:
            hooks.recorder.count_internal_error()


def _dummy_lm():
    try:
        from dspy.utils.dummies import DummyLM

        return DummyLM
    except Exception:
        return None


# --- the bracket: one record per outermost LM call -------------------------------------


def _bracket(hooks, original):
    if _is_async(original):

        @functools.wraps(original)
        async def acall(*args, **kwargs):
            if not args or CALL.get() is not None:  # unbound, or nested in a call already counted
                return await original(*args, **kwargs)
            record = hooks.begin(args[0])
            if record is None:
                return await original(*args, **kwargs)
            state = InFlight(record)
            token = CALL.set(state)
            try:
                result = await original(*args, **kwargs)
            except BaseException as exc:
                CALL.reset(token)
                _failed(hooks, state, args, kwargs, exc)
                raise
            CALL.reset(token)
            _returned(hooks, state, args[0])
            return result

        return acall

    @functools.wraps(original)
    def __call__(*args, **kwargs):
        if not args or CALL.get() is not None:
            return original(*args, **kwargs)
        record = hooks.begin(args[0])
        if record is None:
            return original(*args, **kwargs)
        state = InFlight(record)
        token = CALL.set(state)
        try:
            result = original(*args, **kwargs)
        except BaseException as exc:
            CALL.reset(token)
            _failed(hooks, state, args, kwargs, exc)
            raise
        CALL.reset(token)
        _returned(hooks, state, args[0])
        return result

    return __call__


def _is_async(function) -> bool:
    import inspect

    return inspect.iscoroutinefunction(inspect.unwrap(function)) or inspect.iscoroutinefunction(function)


def _returned(hooks, state: InFlight, lm) -> None:
    try:
        state.record.retries = state.retries()
        if state.read is None:  # nothing to read (history off on an LM DSPy does not parse): usage unknown
            hooks.finish_response(state.record, lm, None, None, state.hit, None, None)
            return
        usage, cost, flag, response_model, parts = state.read
        hooks.finish_response(state.record, lm, usage, cost, state.hit or flag, response_model, parts)
    except Exception:
        hooks.recorder.count_internal_error()
        hooks.recorder.discard(state.record)


def _failed(hooks, state: InFlight, args, kwargs, error: BaseException) -> None:
    try:
        state.record.retries = state.retries()
        prompt = kwargs.get("prompt")
        if prompt is None and len(args) > 1 and isinstance(args[1], str):
            prompt = args[1]
        options = {k: v for k, v in kwargs.items() if k not in _CALL_PARAMETERS}
        parts = _parts(args[0], kwargs.get("messages"), prompt, options, None, None)
    except Exception:
        parts = None
    hooks.finish_error(state.record, args[0], error, parts)


# --- readers: where DSPy reads the response, we read it too ----------------------------


def _reader(hooks, original, read, rank: int):
    @functools.wraps(original)
    def reader(*args, **kwargs):
        value = original(*args, **kwargs)
        state = CALL.get()
        if state is not None and state.rank < rank:
            try:
                found = read(args, kwargs, value)
                if found is not None:
                    state.read, state.rank = found, rank
            except Exception:
                hooks.recorder.count_internal_error()
        return value

    return reader


def _provider_response(args, kwargs, outputs) -> tuple | None:
    """BaseLM._process_lm_response(self, response, prompt, messages, **kwargs) -> outputs."""
    names = ("self", "response", "prompt", "messages")
    bound = dict(zip(names, args))
    options = {k: v for k, v in kwargs.items() if k not in names}
    for name in names[len(args) :]:
        if name in kwargs:
            bound[name] = kwargs[name]
    lm, response = bound.get("self"), bound.get("response")
    usage = _usage_dict(getattr(response, "usage", None))
    hidden = getattr(response, "_hidden_params", None)
    cost = hidden.get("response_cost") if isinstance(hidden, dict) else None
    parts = _parts(lm, bound.get("messages"), bound.get("prompt"), options, outputs, usage)
    return usage, cost, bool(getattr(response, "cache_hit", False)), getattr(response, "model", None), parts


def _typed_response(args, kwargs, response) -> tuple | None:
    """DSPy 3.3's BaseLM._finalize_lm_response(self, request, response) -> LMResponse."""
    lm = args[0] if args else kwargs.get("self")
    request = args[1] if len(args) > 1 else kwargs.get("request")
    usage = response.usage_as_dict() if hasattr(response, "usage_as_dict") else _usage_dict(response.usage)
    try:
        outputs = response.to_legacy_outputs()
    except Exception:
        outputs = None
    parts = _parts(
        lm,
        payload.plain(getattr(request, "messages", None)),
        None,
        payload.plain(getattr(request, "config", None)),
        outputs,
        usage,
    )
    return usage, response.cost, bool(response.cache_hit), response.model, parts


def _history_entry(args, kwargs, result) -> tuple | None:
    """BaseLM.update_history(self, entry) / update_global_history(self, entry): the last resort."""
    lm = args[0] if args else kwargs.get("self")
    entry = args[1] if len(args) > 1 else kwargs.get("entry")
    if not isinstance(entry, dict):
        return None
    usage = _usage_dict(entry.get("usage"))
    flag = bool(getattr(entry.get("response"), "cache_hit", False))
    parts = _parts(lm, entry.get("messages"), entry.get("prompt"), entry.get("kwargs"), entry.get("outputs"), usage)
    return usage, entry.get("cost"), flag, entry.get("response_model"), parts


def _parts(lm, messages, prompt, options, outputs, usage) -> tuple:
    """A payload's parts (hooks.finish_response): outputs and usage made plain, as these DSPy
    versions leave litellm's objects in them (tool calls, token details)."""
    options = payload.plain_options(options) if options else options
    plain_outputs = payload.plain(outputs) if outputs is not None else None
    return messages, prompt, payload.lm_options(lm), options, plain_outputs, payload.plain(usage), None


def _usage_dict(usage: Any) -> dict:
    if not usage:
        return {}
    if isinstance(usage, dict):
        return usage
    try:
        return dict(usage)  # litellm's Usage iterates as (name, value) pairs, as DSPy reads it
    except Exception:
        dump = getattr(usage, "model_dump", None)
        return dump() if callable(dump) else {}


# --- cache hits and HTTP requests ---------------------------------------------------------


def _install_cache_hits(hooks) -> None:
    from dspy.clients.cache import Cache

    original = Cache.__dict__["get"]

    @functools.wraps(original)
    def get(*args, **kwargs):
        value = original(*args, **kwargs)
        if value is not None:
            state = CALL.get()
            if state is not None:
                state.hit = True
        return value

    hooks.patch(Cache, "get", get)


def _install_requests(hooks) -> None:
    import httpx

    original_send, original_asend = httpx.Client.__dict__["send"], httpx.AsyncClient.__dict__["send"]

    @functools.wraps(original_send)
    def send(*args, **kwargs):
        state = CALL.get()
        if state is not None:
            _count_request(hooks, state, args, kwargs)
        return original_send(*args, **kwargs)

    @functools.wraps(original_asend)
    async def asend(*args, **kwargs):
        state = CALL.get()
        if state is not None:
            _count_request(hooks, state, args, kwargs)
        return await original_asend(*args, **kwargs)

    hooks.patch(httpx.Client, "send", send)
    hooks.patch(httpx.AsyncClient, "send", asend)


def _count_request(hooks, state: InFlight, args, kwargs) -> None:
    try:
        request = args[1] if len(args) > 1 else kwargs.get("request")
        url = str(request.url)
        if state.requests is None:
            state.requests = {}
        state.requests[url] = state.requests.get(url, 0) + 1
    except Exception:
        hooks.recorder.count_internal_error()
