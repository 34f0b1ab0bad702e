"""Where dspy-top meets DSPy: thin wrappers around DSPy's LM execution, Evaluate, compile and Tool.

Why not a global DSPy callback: registering one makes DSPy wrap every module and
adapter call (hundreds of µs per LM call) and `on_lm_end` carries no usage. DSPy 3.4
runs every LM call, on both engines, sync and async, through
`dspy.clients.execution.execute/aexecute`, which return a `CallResult` holding the
usage, the priced cost and the cache-hit flag. Wrapping those two functions sees every
call exactly once with exact numbers, on whichever thread or task makes it. An
unfamiliar DSPy (no such functions) gets `fallback`: wrappers on `BaseLM.__call__` and
`acall` that read the history entry the call records.

Every wrapper swallows its own errors (counted) and re-raises only the program's.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import itertools
import time
import weakref
from dataclasses import dataclass
from typing import Any

from dspy_top.instrumentation.recorder import CallRecord, Recorder

# The call being executed on this thread or task: retries and partial usage land on it.
_CURRENT: contextvars.ContextVar[CallRecord | None] = contextvars.ContextVar("dspy_top_call", default=None)
# DSPy copies its own settings into Parallel/Evaluate/asyncify workers, not arbitrary
# ContextVars; so the evaluation/compile a call belongs to travels as a settings key.
SCOPE_KEY = "dspy_top_scope"
_scope_ids = itertools.count(1)
MECHANISM_EXECUTION = "execution-hooks"
MECHANISM_FALLBACK = "lm-call-fallback"


@dataclass(frozen=True)
class Scope:
    """The evaluations and compiles enclosing the current code, outermost first."""

    ids: tuple[str, ...] = ()
    owners: tuple[int, ...] = ()  # id() of the Evaluate/optimizer instances, to skip re-entry

    def push(self, scope_id: str, owner: object) -> "Scope":
        return Scope(self.ids + (scope_id,), self.owners + (id(owner),))


class Hooks:
    """Installs and removes every wrapper; holds what they share."""

    def __init__(self, recorder: Recorder, guard=None, prices=None) -> None:
        self.recorder = recorder
        self.guard = guard  # budget guard (optional): may refuse a call before it starts
        self.prices = prices or {}  # model -> dspy_top.pricing.Price, replacing DSPy's figure
        self._restore: list[tuple[object, str, Any]] = []
        self._paths: dict[tuple[int, ...], tuple[tuple[weakref.ref, ...], str, str, tuple[str, ...]]] = {}
        self.mechanism = ""
        # Set in a forked child: starts its socket server, once, outside the at-fork hook.
        self.on_first_call = None

    def run_first_call(self) -> None:
        callback, self.on_first_call = self.on_first_call, None
        if callback is not None:
            try:
                callback()
            except Exception:
                self.recorder.count_internal_error()

    # --- install / uninstall ------------------------------------------------------

    def install(self) -> str:
        import importlib

        settings_module = importlib.import_module("dspy.dsp.utils.settings")

        self._overrides = settings_module.thread_local_overrides
        self._main_config = settings_module.main_thread_config
        try:
            from dspy.clients import execution

            if not _execution_is_familiar(execution):
                raise LookupError("unfamiliar dspy.clients.execution")
            self._install_execution(execution)
            self.mechanism = MECHANISM_EXECUTION
        except Exception:
            self.mechanism = MECHANISM_FALLBACK
            self._install_fallback()
        for install in (self._install_evaluate, self._install_compile, self._install_tools,
                        self._install_stream_usage):
            try:
                install()
            except Exception:
                self.recorder.count_internal_error()
        return self.mechanism

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._restore):
            try:
                setattr(owner, name, original)
            except Exception:
                pass
        self._restore.clear()

    def _patch(self, owner: object, name: str, replacement: Any) -> None:
        self._restore.append((owner, name, owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)))
        setattr(owner, name, replacement)

    # --- settings, module paths, scopes ----------------------------------------------

    def _setting(self, name: str) -> Any:
        overrides = self._overrides.get()
        if name in overrides:
            return overrides[name]
        return self._main_config.get(name)

    def _module_path(self) -> tuple[str, str, tuple[str, ...]]:
        """(path like `RAG.generate_answer.predict`, innermost class, class chain) of the caller."""
        modules = self._setting("caller_modules")
        if not modules:
            return "(direct)", "LM", ()
        key = tuple(map(id, modules))
        cached = self._paths.get(key)
        if cached is not None:
            refs, path, cls, chain = cached
            if all(ref() is module for ref, module in zip(refs, modules)):
                return path, cls, chain
        path, chain = _describe(modules)
        try:
            refs = tuple(weakref.ref(m) for m in modules)
        except TypeError:
            return path, chain[-1], chain
        if len(self._paths) > 10_000:
            self._paths.clear()
        self._paths[key] = (refs, path, chain[-1], chain)
        return path, chain[-1], chain

    def _scope(self) -> Scope:
        scope = self._setting(SCOPE_KEY)
        return scope if isinstance(scope, Scope) else Scope()

    def _enter_scope(self, scope: Scope):
        overrides = self._overrides.get()
        updated = type(overrides)(overrides)
        updated[SCOPE_KEY] = scope
        return self._overrides.set(updated)

    # --- LM calls: the hot path -----------------------------------------------------------

    def _begin(self, lm, stream: bool) -> CallRecord | None:
        if self.on_first_call is not None:
            self.run_first_call()
        try:
            path, cls, chain = self._module_path()
            model = str(getattr(lm, "model", "?"))
            if self.guard is not None:
                self.guard.before_call(path, model)
            scope = self._setting(SCOPE_KEY)
            return self.recorder.begin(path, cls, chain, model, scope.ids if isinstance(scope, Scope) else (), stream)
        except BaseException as exc:
            if self.guard is not None and self.guard.is_budget_error(exc):
                raise
            self.recorder.count_internal_error()
            return None

    def _finish_ok(self, record: CallRecord, lm, call, result) -> None:
        try:
            usage = result.usage or {}
            hit = bool(result.cache_hit)
            tokens = _tokens(usage)
            cost = result.cost
            price = self.prices.get(record.model)
            if price is not None and not hit:
                cost = price.cost(tokens[0], tokens[1], tokens[2])
            self.recorder.finish(
                record, prompt_tokens=tokens[0], completion_tokens=tokens[1], cached_tokens=tokens[2],
                reasoning_tokens=tokens[3], cost=None if hit else cost, cache_hit=hit,
                saved=result.cost if hit else None, response_model=_text(result.response_model),
                payload=(lm, call, result, None),
            )
            if self.guard is not None:
                self.guard.after_call(record)
        except Exception:
            self.recorder.count_internal_error()

    def _finish_error(self, record: CallRecord, lm, call, error: BaseException) -> None:
        try:
            tokens = _tokens(record.partial_usage or {})
            self.recorder.finish(record, prompt_tokens=tokens[0], completion_tokens=tokens[1],
                                 cached_tokens=tokens[2], reasoning_tokens=tokens[3], cost=None,
                                 error=error, payload=(lm, call, None, error))
        except Exception:
            self.recorder.count_internal_error()

    def _install_execution(self, execution) -> None:
        original_execute, original_aexecute = execution.execute, execution.aexecute
        original_delay, original_account = execution._delay, execution._account_failed_call
        hooks = self

        @functools.wraps(original_execute)
        def execute(lm, call):
            if _CURRENT.get() is not None:  # a nested execute (legacy forward): counted once, outside
                return original_execute(lm, call)
            record = hooks._begin(lm, hooks._setting("send_stream") is not None)
            if record is None:
                return original_execute(lm, call)
            token = _CURRENT.set(record)
            try:
                result = original_execute(lm, call)
            except BaseException as exc:
                _CURRENT.reset(token)
                hooks._finish_error(record, lm, call, exc)
                raise
            _CURRENT.reset(token)
            hooks._finish_ok(record, lm, call, result)
            return result

        @functools.wraps(original_aexecute)
        async def aexecute(lm, call):
            if _CURRENT.get() is not None:
                return await original_aexecute(lm, call)
            record = hooks._begin(lm, hooks._setting("send_stream") is not None)
            if record is None:
                return await original_aexecute(lm, call)
            token = _CURRENT.set(record)
            try:
                result = await original_aexecute(lm, call)
            except BaseException as exc:
                _CURRENT.reset(token)
                hooks._finish_error(record, lm, call, exc)
                raise
            _CURRENT.reset(token)
            hooks._finish_ok(record, lm, call, result)
            return result

        @functools.wraps(original_delay)
        def _delay(exc, attempt):
            record = _CURRENT.get()
            if record is not None:
                record.retries += 1
            return original_delay(exc, attempt)

        @functools.wraps(original_account)
        def _account_failed_call(lm, results, primary):
            record = _CURRENT.get()
            if record is not None:
                try:
                    merged: dict[str, int] = {}
                    for result in results:
                        for name, value in zip(("prompt_tokens", "completion_tokens", "cached", "reasoning"),
                                               _tokens(getattr(result, "usage", None) or {})):
                            merged[name] = merged.get(name, 0) + value
                    record.partial_usage = {"prompt_tokens": merged.get("prompt_tokens", 0),
                                            "completion_tokens": merged.get("completion_tokens", 0)}
                except Exception:
                    hooks.recorder.count_internal_error()
            return original_account(lm, results, primary)

        self._patch(execution, "execute", execute)
        self._patch(execution, "aexecute", aexecute)
        self._patch(execution, "_delay", _delay)
        self._patch(execution, "_account_failed_call", _account_failed_call)

    def _install_fallback(self) -> None:
        """Slower, still exact while history is on: bracket BaseLM calls, read the entry they record."""
        from dspy.clients.base_lm import BaseLM

        hooks = self
        original_call, original_acall = BaseLM.__dict__["__call__"], BaseLM.__dict__["acall"]
        original_update = BaseLM.__dict__["update_history"]

        def finish(record, lm, entry, exc):
            if exc is not None:
                hooks._finish_error(record, lm, None, exc)
                return
            if entry is None:  # history disabled: the call is counted, its usage is not known
                hooks.recorder.finish(record, payload=None)
                return
            response = entry.get("response")
            hit = bool(getattr(response, "cache_hit", False))
            result = _EntryResult(entry.get("usage") or {}, entry.get("cost"), hit, entry.get("response_model"),
                                  entry.get("outputs"))
            hooks._finish_ok(record, lm, _EntryCall(entry), result)

        @functools.wraps(original_acall)
        async def acall(lm, *args, **kwargs):
            if _CURRENT.get() is not None:
                return await original_acall(lm, *args, **kwargs)
            record = hooks._begin(lm, hooks._setting("send_stream") is not None)
            if record is None:
                return await original_acall(lm, *args, **kwargs)
            token = _CURRENT.set(record)
            try:
                result = await original_acall(lm, *args, **kwargs)
            except BaseException as exc:
                _CURRENT.reset(token)
                finish(record, lm, None, exc)
                raise
            _CURRENT.reset(token)
            finish(record, lm, _ENTRIES.pop(record.id, None), None)
            return result

        def update_history(lm, entry):
            record = _CURRENT.get()
            if record is not None:
                _ENTRIES[record.id] = entry
            return original_update(lm, entry)

        self._patch(BaseLM, "__call__", _fallback_call(original_call, hooks, finish))
        self._patch(BaseLM, "acall", acall)
        self._patch(BaseLM, "update_history", update_history)

    # --- Evaluate, compile, tools: rare, so plain wrappers --------------------------------

    def _install_evaluate(self) -> None:
        from dspy.evaluate.evaluate import Evaluate
        from dspy.utils.parallelizer import ParallelExecutor

        hooks = self
        original_call = Evaluate.__dict__["__call__"]
        signature = inspect.signature(original_call)

        @functools.wraps(original_call)
        def __call__(evaluate, *args, **kwargs):
            scope = hooks._scope()
            if id(evaluate) in scope.owners:
                return original_call(evaluate, *args, **kwargs)
            scope_id = f"eval-{next(_scope_ids)}"
            try:
                info = _evaluate_info(evaluate, signature, args, kwargs, scope)
                hooks.recorder.scope_start("eval", scope_id, info)
                token = hooks._enter_scope(scope.push(scope_id, evaluate))
            except Exception:
                hooks.recorder.count_internal_error()
                return original_call(evaluate, *args, **kwargs)
            try:
                result = original_call(evaluate, *args, **kwargs)
            except BaseException as exc:
                hooks._overrides.reset(token)
                hooks.recorder.scope_end(scope_id, {"error": f"{type(exc).__name__}: {exc}"[:300]})
                raise
            hooks._overrides.reset(token)
            try:
                hooks.recorder.scope_end(scope_id, _evaluation_outcome(result))
            except Exception:
                hooks.recorder.count_internal_error()
            return result

        original_progress = ParallelExecutor.__dict__["_update_progress"]

        @functools.wraps(original_progress)
        def _update_progress(executor, pbar, nresults, ntotal):
            try:
                if executor.compare_results:
                    scope = hooks._scope()
                    if scope.ids and scope.ids[-1].startswith("eval-"):
                        hooks.recorder.eval_progress(scope.ids[-1], int(ntotal), float(nresults))
            except Exception:
                hooks.recorder.count_internal_error()
            return original_progress(executor, pbar, nresults, ntotal)

        self._patch(Evaluate, "__call__", __call__)
        self._patch(ParallelExecutor, "_update_progress", _update_progress)

    def _install_compile(self) -> None:
        from dspy.teleprompt.teleprompt import Teleprompter

        hooks = self

        def wrap(cls) -> None:
            original = cls.__dict__.get("compile")
            if original is None or getattr(original, "__dspy_top__", False):
                return
            if inspect.iscoroutinefunction(original):
                return  # async compile: counted through its LM calls only

            @functools.wraps(original)
            def compile(optimizer, *args, **kwargs):
                scope = hooks._scope()
                if id(optimizer) in scope.owners:
                    return original(optimizer, *args, **kwargs)
                scope_id = f"compile-{next(_scope_ids)}"
                try:
                    hooks.recorder.scope_start("compile", scope_id, _compile_info(optimizer, args, kwargs, scope))
                    token = hooks._enter_scope(scope.push(scope_id, optimizer))
                except Exception:
                    hooks.recorder.count_internal_error()
                    return original(optimizer, *args, **kwargs)
                try:
                    result = original(optimizer, *args, **kwargs)
                except BaseException as exc:
                    hooks._overrides.reset(token)
                    hooks.recorder.scope_end(scope_id, {"error": f"{type(exc).__name__}: {exc}"[:300]})
                    raise
                hooks._overrides.reset(token)
                hooks.recorder.scope_end(scope_id, {})
                return result

            compile.__dspy_top__ = True  # type: ignore[attr-defined]
            hooks._patch(cls, "compile", compile)

        def walk(cls) -> None:
            for sub in cls.__subclasses__():
                wrap(sub)
                walk(sub)

        walk(Teleprompter)
        original_init_subclass = Teleprompter.__dict__["__init_subclass__"]

        def __init_subclass__(cls, **kwargs):
            original_init_subclass.__func__(cls, **kwargs)
            try:
                wrap(cls)
            except Exception:
                hooks.recorder.count_internal_error()

        self._patch(Teleprompter, "__init_subclass__", classmethod(__init_subclass__))

    def _install_tools(self) -> None:
        from dspy.adapters.types.tool import Tool

        hooks = self
        original_call, original_acall = Tool.__dict__["__call__"], Tool.__dict__["acall"]

        @functools.wraps(original_call)
        def __call__(tool, **kwargs):
            started = time.perf_counter()
            error = None
            try:
                return original_call(tool, **kwargs)
            except BaseException as exc:
                error = exc
                raise
            finally:
                hooks._record_tool(tool, time.perf_counter() - started, error)

        @functools.wraps(original_acall)
        async def acall(tool, **kwargs):
            started = time.perf_counter()
            error = None
            try:
                return await original_acall(tool, **kwargs)
            except BaseException as exc:
                error = exc
                raise
            finally:
                hooks._record_tool(tool, time.perf_counter() - started, error)

        self._patch(Tool, "__call__", __call__)
        self._patch(Tool, "acall", acall)

    def _install_stream_usage(self) -> None:
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
                if (self._setting("send_stream") is not None and isinstance(request, dict)
                        and "stream_options" not in request):
                    request["stream_options"] = {"include_usage": True}
            except Exception:
                self.recorder.count_internal_error()
            return original(request, cache_kwargs, *args, **kwargs)

        self._patch(lm_module, "_get_stream_completion_fn", _get_stream_completion_fn)

    def _record_tool(self, tool, duration: float, error: BaseException | None) -> None:
        try:
            self.recorder.tool(str(getattr(tool, "name", "tool")), self._module_path()[0], duration, error)
        except Exception:
            self.recorder.count_internal_error()


# --- helpers --------------------------------------------------------------------------

_ENTRIES: dict[int, dict] = {}


def _fallback_call(original_call, hooks: Hooks, finish):
    @functools.wraps(original_call)
    def __call__(lm, *args, **kwargs):
        if _CURRENT.get() is not None:
            return original_call(lm, *args, **kwargs)
        record = hooks._begin(lm, hooks._setting("send_stream") is not None)
        if record is None:
            return original_call(lm, *args, **kwargs)
        token = _CURRENT.set(record)
        try:
            result = original_call(lm, *args, **kwargs)
        except BaseException as exc:
            _CURRENT.reset(token)
            _ENTRIES.pop(record.id, None)
            finish(record, lm, None, exc)
            raise
        _CURRENT.reset(token)
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


def _execution_is_familiar(execution) -> bool:
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


def _tokens(usage: dict) -> tuple[int, int, int, int]:
    """(prompt, completion, cached, reasoning) from an OpenAI-shaped usage dict."""
    prompt = _int(usage.get("prompt_tokens"))
    completion = _int(usage.get("completion_tokens"))
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    cached = _int(_get(prompt_details, "cached_tokens"))
    reasoning = _int(_get(completion_details, "reasoning_tokens"))
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


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _describe(modules) -> tuple[str, tuple[str, ...]]:
    """Name each module by the attribute its parent holds it in: `RAG.generate_answer.predict`."""
    chain = tuple(type(m).__name__ for m in modules)
    parts = [chain[0]]
    for parent, child in zip(modules, modules[1:]):
        parts.append(_attribute_name(parent, child) or type(child).__name__)
    return ".".join(parts), chain


def _attribute_name(parent: object, child: object) -> str | None:
    try:
        items = vars(parent).items()
    except TypeError:
        return None
    for name, value in items:
        if value is child:
            return name
        if isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                if item is child:
                    return f"{name}[{index}]"
        elif isinstance(value, dict):
            for key, item in value.items():
                if item is child:
                    return f"{name}[{key}]"
    return None


def _length(value: Any) -> int | None:
    try:
        return len(value) if value is not None else None
    except TypeError:
        return None


def _simple(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value[:200]
    model = getattr(value, "model", None)
    if isinstance(model, str):
        return f"LM({model})"
    if callable(value):
        return getattr(value, "__name__", type(value).__name__)
    return type(value).__name__


def _optimizer_params(optimizer: object) -> dict[str, Any]:
    try:
        params = optimizer.get_params() if hasattr(optimizer, "get_params") else vars(optimizer)
    except Exception:
        params = {}
    out: dict[str, Any] = {}
    for key, value in list(params.items())[:40]:
        if str(key).startswith("_") or "key" in str(key).lower():
            continue
        out[str(key)] = _simple(value)
    return out


def _compile_info(optimizer, args, kwargs, scope: Scope) -> dict[str, Any]:
    student = args[0] if args else kwargs.get("student")
    try:
        predictors = len(student.predictors()) if student is not None else None
    except Exception:
        predictors = None
    data = {"student", "trainset", "valset", "teacher", "program"}
    return {
        "class": type(optimizer).__name__, "params": _optimizer_params(optimizer),
        # Simple compile() arguments such as num_trials, minibatch, max_bootstrapped_demos.
        "arguments": {str(k): _simple(v) for k, v in kwargs.items() if k not in data},
        "parent": scope.ids[-1] if scope.ids else None, "predictors": predictors,
        "trainset": _length(kwargs.get("trainset")), "valset": _length(kwargs.get("valset")),
    }


def _evaluate_info(evaluate, signature, args, kwargs, scope: Scope) -> dict[str, Any]:
    bound = signature.bind_partial(evaluate, *args, **kwargs).arguments
    devset = bound.get("devset") or evaluate.devset
    metric = bound.get("metric") or evaluate.metric
    num_threads = bound.get("num_threads") or evaluate.num_threads
    metadata = bound.get("callback_metadata") or {}
    program = bound.get("program")
    return {
        "total": _length(devset), "done": 0, "score_sum": 0.0,
        "num_threads": num_threads if isinstance(num_threads, int) else None,
        "metric": _simple(metric), "program": type(program).__name__ if program is not None else None,
        "metadata": {str(k): _simple(v) for k, v in dict(metadata).items()} if isinstance(metadata, dict) else {},
        "parent": scope.ids[-1] if scope.ids else None,
    }


def _evaluation_outcome(result: Any) -> dict[str, Any]:
    score = getattr(result, "score", result if isinstance(result, (int, float)) else None)
    results = getattr(result, "results", None)
    info: dict[str, Any] = {"score": float(score) if isinstance(score, (int, float)) else None}
    if isinstance(results, list):
        info["done"] = len(results)
    return info
