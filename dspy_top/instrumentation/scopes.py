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
from typing import Any

from dspy_top.instrumentation.hooks import Scope

_scope_ids = itertools.count(1)


def install_evaluate(hooks) -> None:
    from dspy.evaluate.evaluate import Evaluate
    from dspy.utils.parallelizer import ParallelExecutor

    original_call = Evaluate.__dict__["__call__"]
    signature = inspect.signature(original_call)

    @functools.wraps(original_call)
    def __call__(evaluate, *args, **kwargs):
        return _run_in_scope(hooks, "eval", evaluate, lambda: original_call(evaluate, *args, **kwargs),
                             lambda scope: _evaluate_info(evaluate, signature, args, kwargs, scope),
                             _evaluation_outcome)

    original_progress = ParallelExecutor.__dict__["_update_progress"]

    @functools.wraps(original_progress)
    def _update_progress(executor, pbar, nresults, ntotal):
        try:
            if executor.compare_results:
                scope = hooks.scope()
                if scope.ids and scope.ids[-1].startswith("eval-"):
                    hooks.recorder.eval_progress(scope.ids[-1], int(ntotal), float(nresults))
        except Exception:
            hooks.recorder.count_internal_error()
        return original_progress(executor, pbar, nresults, ntotal)

    hooks.patch(Evaluate, "__call__", __call__)
    hooks.patch(ParallelExecutor, "_update_progress", _update_progress)


def install_compile(hooks) -> None:
    from dspy.teleprompt.teleprompt import Teleprompter

    def wrap(cls) -> None:
        original = cls.__dict__.get("compile")
        if original is None or getattr(original, "__dspy_top__", False):
            return
        if inspect.iscoroutinefunction(original):
            return  # async compile: counted through its LM calls only

        @functools.wraps(original)
        def compile(optimizer, *args, **kwargs):
            # Attributes an optimizer sets while compiling (e.g. its resolved settings) are read again at the end.
            return _run_in_scope(hooks, "compile", optimizer, lambda: original(optimizer, *args, **kwargs),
                                 lambda scope: _compile_info(optimizer, args, kwargs, scope),
                                 lambda result: {"params": _optimizer_params(optimizer)})

        compile.__dspy_top__ = True  # type: ignore[attr-defined]
        hooks.patch(cls, "compile", compile)

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

    hooks.patch(Teleprompter, "__init_subclass__", classmethod(__init_subclass__))


def install_tools(hooks) -> None:
    from dspy.adapters.types.tool import Tool

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
            record_tool(hooks, tool, time.perf_counter() - started, error)

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
            record_tool(hooks, tool, time.perf_counter() - started, error)

    hooks.patch(Tool, "__call__", __call__)
    hooks.patch(Tool, "acall", acall)


def _run_in_scope(hooks, kind: str, owner: object, call, describe, outcome):
    """Run `call` as one evaluation or compile scope; re-entry by the same instance is not a new one."""
    scope = hooks.scope()
    if id(owner) in scope.owners:
        return call()
    scope_id = f"{kind}-{next(_scope_ids)}"
    try:
        hooks.recorder.scope_start(kind, scope_id, describe(scope))
        token = hooks.enter_scope(scope.push(scope_id, owner))
    except Exception:
        hooks.recorder.count_internal_error()
        return call()
    try:
        result = call()
    except BaseException as exc:
        hooks.overrides.reset(token)
        failure = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        _end_quietly(hooks, scope_id, lambda: failure)
        raise
    hooks.overrides.reset(token)
    _end_quietly(hooks, scope_id, lambda: outcome(result))
    return result


def _end_quietly(hooks, scope_id: str, info) -> None:
    try:
        hooks.recorder.scope_end(scope_id, info())
    except Exception:
        hooks.recorder.count_internal_error()


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

