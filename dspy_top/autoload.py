"""`DSPY_TOP=1`: instrument any Python process that imports dspy, with no code change.

The `dspy_top_autoload.pth` file that the package installs imports this module at
interpreter start-up when `DSPY_TOP` is set. It imports nothing heavy: it only waits,
through an import hook, for the program's own `import dspy` to finish, then calls
`dspy_top.instrument()` (and watches for multiprocessing's pool, see process_exit.watch).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys

_TARGET = "dspy"


class _AfterDspyImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps dspy's loader so instrumentation runs right after dspy loads."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _InstrumentingLoader(spec.loader)
        return spec


class _InstrumentingLoader(importlib.abc.Loader):
    def __init__(self, loader) -> None:
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        self._loader.exec_module(module)
        _remove_finder()
        _instrument_now()

    def __getattr__(self, name):  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


def _instrument_now() -> None:
    try:
        import dspy_top

        dspy_top.instrument()
    except Exception as exc:  # never fail the program's `import dspy`
        sys.stderr.write(f"dspy-top: auto-instrumentation failed: {type(exc).__name__}: {exc}\n")


def _watch_pool_workers() -> None:
    """A multiprocessing pool worker this process becomes must report its totals after each task,
    even when the program imports dspy only in its first task (process_exit.watch)."""
    try:
        from dspy_top.instrumentation import process_exit

        process_exit.watch()
    except Exception as exc:
        sys.stderr.write(f"dspy-top: auto-instrumentation failed: {type(exc).__name__}: {exc}\n")


def _remove_finder() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AfterDspyImport)]


def enable() -> None:
    """Instrument now if dspy is already imported, else as soon as it is."""
    _watch_pool_workers()
    if _TARGET in sys.modules:
        _instrument_now()
    elif not any(isinstance(f, _AfterDspyImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterDspyImport())


if os.environ.get("DSPY_TOP", "").strip().lower() not in ("", "0", "false", "no", "off"):
    enable()
