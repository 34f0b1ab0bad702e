"""Rare events, so plain wrappers: `dspy.Evaluate` runs, optimizer `compile` calls and `dspy.Tool` calls.

An evaluation or compile opens a scope: its id travels to worker threads as a DSPy settings
key (DSPy copies its own settings into Parallel/Evaluate/asyncify workers, not arbitrary
ContextVars), so every LM call knows which evaluations and compiles it ran inside.
"""

from __future__ import annotations

import functools
import inspect
import itertools
import time
import types
import weakref
from typing import Any

from dspy_top.instrumentation.call_context import Scope
from dspy_top.instrumentation.frames import in_module_of

_scope_ids = itertools.count(1)


def install_evaluate(hooks) -> None:
    from dspy.evaluate.evaluate import Evaluate
    from dspy.utils.parallelizer import ParallelExecutor

    original_call = Evaluate.__dict__["__call__"]
    signature = inspect.signature(original_call)

    @functools.wraps(original_call)
    def __call__(*args, **kwargs):
        # The original is called right here, not from a helper: a warning DSPy raises inside
        # it then walks out through this frame only (frames.py).
        opened = _open_scope(hooks, "eval", args, lambda scope: _evaluate_info(args[0], signature, args, kwargs, scope))
        if opened is None:
            return original_call(*args, **kwargs)
        try:
            result = original_call(*args, **kwargs)
        except BaseException as exc:
            _close_scope(hooks, opened, exc, None)
            raise
        _close_scope(hooks, opened, None, lambda: _evaluation_outcome(result))
        return result

    original_progress = ParallelExecutor.__dict__["_update_progress"]
    progress_signature = inspect.signature(original_progress)

    @functools.wraps(original_progress)
    def _update_progress(*args, **kwargs):
        try:
            if len(args) == 4 and not kwargs:  # how DSPy calls it, once per example
                executor, _, nresults, ntotal = args
            else:
                bound = progress_signature.bind(*args, **kwargs).arguments
                executor, nresults, ntotal = bound["self"], bound["nresults"], bound["ntotal"]
            if executor.compare_results:
                scope = hooks.scope()
                if scope.ids and scope.ids[-1].startswith("eval-"):
                    hooks.recorder.eval_progress(scope.ids[-1], int(ntotal), float(nresults))
        except Exception:
            hooks.recorder.count_internal_error()
        return original_progress(*args, **kwargs)

    hooks.patch(Evaluate, "__call__", __call__)
    hooks.patch(ParallelExecutor, "_update_progress", _update_progress)


def install_compile(hooks) -> None:
    """See every optimizer's `compile` without touching the optimizer classes.

    Wrapping `compile` in each Teleprompter subclass would write into classes of the program's,
    and cloudpickle copies a class defined in `__main__` or in a function by value, dict and
    all (as Ray, joblib and spawn do). So the wrapping happens on DSPy's own base class: its
    `__getattribute__` hands out `optimizer.compile` as a bound method running in a scope.
    Teleprompter pickles by reference, so nothing of dspy-top travels with a pickled class."""
    from dspy.teleprompt.teleprompt import Teleprompter

    inherited = Teleprompter.__getattribute__  # what an optimizer looked attributes up with
    # id(compile function) -> its scoped wrapper, while anything holds the wrapper: two lookups
    # of `optimizer.compile` then give equal bound methods, as they do without dspy-top. Keyed by
    # id, not by the function (a weak key whose value refers to it would never be freed); the
    # wrapper holds its function, so that id is not reused while the entry lives.
    scoped: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()

    @functools.wraps(inherited)
    def __getattribute__(self, name, /):
        value = inherited(self, name)
        if name == "compile" and type(value) is types.MethodType and value.__self__ is self:
            try:
                return _scoped_compile(hooks, scoped, value)
            except Exception:
                hooks.recorder.count_internal_error()
        return value

    __getattribute__.__module__ = getattr(inherited, "__module__", None)  # object's has none
    hooks.patch(Teleprompter, "__getattribute__", __getattribute__)


def _scoped_compile(hooks, scoped: weakref.WeakValueDictionary, bound):
    """`bound` (an optimizer's compile method) as a method that runs as one compile scope."""
    function = bound.__func__
    wrapper = scoped.get(id(function))
    if wrapper is None or wrapper.__wrapped__ is not function:
        if inspect.iscoroutinefunction(function):
            return bound  # async compile: counted through its LM calls only
        wrapper = scoped[id(function)] = _compile_in_scope(hooks, function)
    return types.MethodType(wrapper, bound.__self__)


def _compile_in_scope(hooks, function):
    @functools.wraps(function)
    def compile(*args, **kwargs):
        opened = _open_scope(hooks, "compile", args, lambda scope: _compile_info(args[0], args[1:], kwargs, scope))
        if opened is None:
            return function(*args, **kwargs)
        try:
            result = function(*args, **kwargs)
        except BaseException as exc:
            _close_scope(hooks, opened, exc, None)
            raise
        # Attributes an optimizer sets while compiling (e.g. its resolved settings) are read again at the end.
        _close_scope(hooks, opened, None, lambda: {"params": _optimizer_params(args[0])})
        return result

    return in_module_of(compile, function)


def install_tools(hooks) -> None:
    from dspy.adapters.types.tool import Tool

    original_call, original_acall = Tool.__dict__["__call__"], Tool.__dict__["acall"]

    @functools.wraps(original_call)
    def __call__(*args, **kwargs):
        started = time.perf_counter()
        error = None
        try:
            return original_call(*args, **kwargs)
        except BaseException as exc:
            error = exc
            raise
        finally:
            record_tool(hooks, args[0] if args else None, time.perf_counter() - started, error)

    @functools.wraps(original_acall)
    async def acall(*args, **kwargs):
        started = time.perf_counter()
        error = None
        try:
            return await original_acall(*args, **kwargs)
        except BaseException as exc:
            error = exc
            raise
        finally:
            record_tool(hooks, args[0] if args else None, time.perf_counter() - started, error)

    hooks.patch(Tool, "__call__", __call__)
    hooks.patch(Tool, "acall", acall)


def _open_scope(hooks, kind: str, args: tuple, describe):
    """Open one evaluation or compile scope for a call of `args[0]`'s method: (scope id, token to
    restore DSPy's settings), or None to run the call outside any new scope (re-entry by the same
    instance is not a new one; nor is an unbound call, nor one dspy-top failed to describe)."""
    if not args:
        return None
    try:
        scope = hooks.scope()
        if id(args[0]) in scope.owners:
            return None
        scope_id = f"{kind}-{next(_scope_ids)}"
        hooks.recorder.scope_start(kind, scope_id, describe(scope))
        return scope_id, hooks.enter_scope(scope.push(scope_id, args[0]))
    except Exception:
        hooks.recorder.count_internal_error()
        return None


def _close_scope(hooks, opened: tuple, error: BaseException | None, outcome) -> None:
    """The scoped call ended, with the program's `error` or with `outcome()`'s info."""
    scope_id, token = opened
    try:
        hooks.overrides.reset(token)
        hooks.recorder.scope_end(scope_id, {"error": _describe(error)} if error is not None else outcome())
    except Exception:
        hooks.recorder.count_internal_error()


def _describe(error: BaseException) -> str:
    """`Type: message` of the program's exception (whose __str__ may itself fail)."""
    try:
        text = f"{type(error).__name__}: {error}"
    except Exception:
        text = type(error).__name__
    return text[:300]


def record_tool(hooks, tool, duration: float, error: BaseException | None) -> None:
    try:
        hooks.recorder.tool(str(getattr(tool, "name", "tool")), hooks.module_path()[0], duration, error)
    except Exception:
        hooks.recorder.count_internal_error()


# --- helpers --------------------------------------------------------------------------


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
        "class": type(optimizer).__name__,
        "params": _optimizer_params(optimizer),
        # Simple compile() arguments such as num_trials, minibatch, max_bootstrapped_demos.
        "arguments": {str(k): _simple(v) for k, v in kwargs.items() if k not in data},
        "parent": scope.ids[-1] if scope.ids else None,
        "predictors": predictors,
        "trainset": _length(kwargs.get("trainset")),
        "valset": _length(kwargs.get("valset")),
    }


def _evaluate_info(evaluate, signature, args, kwargs, scope: Scope) -> dict[str, Any]:
    bound = signature.bind_partial(*args, **kwargs).arguments  # args[0] is the Evaluate
    devset = bound.get("devset") or evaluate.devset
    metric = bound.get("metric") or evaluate.metric
    num_threads = bound.get("num_threads") or evaluate.num_threads
    metadata = bound.get("callback_metadata") or {}
    program = bound.get("program")
    return {
        "total": _length(devset),
        "done": 0,
        "score_sum": 0.0,
        "num_threads": num_threads if isinstance(num_threads, int) else None,
        "metric": _simple(metric),
        "program": type(program).__name__ if program is not None else None,
        "metadata": {str(k): _simple(v) for k, v in dict(metadata).items()} if isinstance(metadata, dict) else {},
        "parent": scope.ids[-1] if scope.ids else None,
    }


def _evaluation_outcome(result: Any) -> dict[str, Any]:
    if isinstance(result, tuple) and result:  # DSPy 2.6 with return_outputs/return_all_scores: (score, ...)
        result = result[0]
    score = getattr(result, "score", result if isinstance(result, (int, float)) else None)
    results = getattr(result, "results", None)
    info: dict[str, Any] = {"score": float(score) if isinstance(score, (int, float)) else None}
    if isinstance(results, list):
        info["done"] = len(results)
    return info
