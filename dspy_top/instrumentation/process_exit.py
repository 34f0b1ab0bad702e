"""Final numbers from multiprocessing children, which end through `os._exit` (atexit never runs there).

A child that multiprocessing starts with the fork or forkserver method runs its target, then
`multiprocessing.util._exit_function()` (its finalizers), then `os._exit`. So:

- each child gets a multiprocessing finalizer that sends dspy-top's exit frame, as atexit
  would have (registered again after every fork: multiprocessing clears them in the child);
- a `Pool` worker is usually ended by `Pool.terminate()` (SIGTERM: what `with Pool()` does
  on leaving) while it waits for its next task, when no finalizer runs; so each worker
  sends its totals to its viewers after each task, before handing the result back.

The hooks go in when multiprocessing is imported (now, if it already is) and only add work
after the program's own; they change nothing the program sees.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import sys
import threading
from collections.abc import Callable
from typing import Any

_WATCHED = ("multiprocessing.util", "multiprocessing.pool")
# Runs after the program's own finalizers and after the child's children are joined.
EXIT_PRIORITY = -10

_on_exit: Callable[[], None] | None = None
_on_task_done: Callable[[], None] | None = None
_original_worker: Any = None
_hooked: set[str] = set()


class _Keeper:
    """multiprocessing's after-fork registry holds its objects weakly: this one lives forever."""


_KEEPER = _Keeper()


def install(on_exit: Callable[[], None], on_task_done: Callable[[], None]) -> None:
    """Call `on_exit` when a multiprocessing child ends, `on_task_done` after each task of a pool worker."""
    global _on_exit, _on_task_done
    _on_exit, _on_task_done = on_exit, on_task_done
    watch()


def watch() -> None:
    """Hook multiprocessing's modules now or when imported; they call back only once `install` is called.

    `DSPY_TOP=1` calls this at start-up (autoload.py): a spawn or forkserver pool worker unpickles
    its target as `multiprocessing.pool.worker`, so the hook must be in before the program's
    `import dspy`, which may come only with the worker's first task."""
    waiting = False
    for name in _WATCHED:
        module = sys.modules.get(name)
        if module is not None:
            _hook(name, module)
        else:
            waiting = True
    if waiting and not any(isinstance(finder, _AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport())


def _hook(name: str, module: Any) -> None:
    if name in _hooked:
        return
    _hooked.add(name)
    try:
        if name == "multiprocessing.util":
            module.register_after_fork(_KEEPER, _in_child)
            _register_finalizer(module)  # this process, if multiprocessing started it
        else:
            _hook_pool(module)
    except Exception:
        pass


def _in_child(_keeper: _Keeper) -> None:
    _register_finalizer(sys.modules["multiprocessing.util"])


def _register_finalizer(util: Any) -> None:
    util.Finalize(None, _exit, exitpriority=EXIT_PRIORITY)


def _exit() -> None:
    if _on_exit is not None:
        try:
            _on_exit()
        except Exception:
            pass


def _hook_pool(pool: Any) -> None:
    global _original_worker
    if pool.worker is _pool_worker:
        return
    _original_worker = pool.worker
    # multiprocessing's names, signature and doc: a spawn or forkserver Process pickles its target
    # by them, as `multiprocessing.pool.worker`, so nothing of dspy-top travels with it.
    functools.update_wrapper(_pool_worker, _original_worker)
    pool.worker = _pool_worker


def _pool_worker(*args, **kwargs):
    """multiprocessing.pool.worker (its arguments passed on untouched), telling viewers its totals after each task."""
    # A ThreadPool runs the same worker in threads of this process: nothing to do there.
    if threading.current_thread() is threading.main_thread():
        outqueue = args[1] if len(args) > 1 else kwargs.get("outqueue")
        if outqueue is not None:
            _report_after_each_task(outqueue)
    return _original_worker(*args, **kwargs)


def _report_after_each_task(outqueue: Any) -> None:
    try:
        put = outqueue.put
    except AttributeError:
        return

    def put_after_reporting(item):
        if _on_task_done is not None:
            try:
                _on_task_done()
            except Exception:
                pass
        return put(item)

    try:
        outqueue.put = put_after_reporting
    except (AttributeError, TypeError):
        pass


class _AfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: hooks multiprocessing's modules right after the program imports them."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in _WATCHED or fullname in _hooked:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _HookingLoader(spec.loader, fullname)
        return spec


class _HookingLoader(importlib.abc.Loader):
    def __init__(self, loader, name: str) -> None:
        self._loader = loader
        self._name = name

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _hook(self._name, module)
        if all(name in _hooked for name in _WATCHED):
            sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AfterImport)]

    def __getattr__(self, name):
        return getattr(self._loader, name)
