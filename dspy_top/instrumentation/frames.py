"""Wrappers whose frames belong to the wrapped function's module, as far as a warning can tell.

DSPy 3.4 aims its deprecation warnings at the user's line by walking out of every frame whose
module is `dspy` or `dspy.*` (clients/_deprecation.py). A wrapper of dspy-top's on that walk
(execute, BaseLM.__call__, Evaluate.__call__...) would stop it one frame early: the warning
would name dspy-top's file, and Python's default filter, which shows a DeprecationWarning only
when it is attributed to `__main__`, would hide it from the user. A frame's module is its
globals' `__name__`, so each wrapper is re-made with a copy of its globals named after the
wrapped function's module. Its code, file and line numbers (what a traceback shows) stay its own.
"""

from __future__ import annotations

import types
from typing import Any


def in_module_of(wrapper: Any, wrapped: Any) -> Any:
    """`wrapper` (a plain function) running with globals named after `wrapped`'s module."""
    module = getattr(wrapped, "__module__", None)
    if (
        type(wrapper) is not types.FunctionType
        or type(module) is not str
        or module == wrapper.__globals__.get("__name__")
    ):
        return wrapper
    namespace = dict(wrapper.__globals__)  # names the wrappers use are set once, at import
    namespace["__name__"] = module
    remade = types.FunctionType(
        wrapper.__code__, namespace, wrapper.__name__, wrapper.__defaults__, wrapper.__closure__
    )
    remade.__kwdefaults__ = wrapper.__kwdefaults__
    remade.__dict__.update(wrapper.__dict__)  # __wrapped__, from functools.wraps
    for name in ("__module__", "__qualname__", "__doc__", "__annotations__", "__type_params__"):
        if hasattr(wrapper, name):
            setattr(remade, name, getattr(wrapper, name))
    return remade
