"""`instrument()`: wires the recorder, the DSPy hooks and the socket server together, once per process.

Also makes the process fork-aware (a forked child starts from zero with its own
socket) and drains to viewers at exit.
"""

from __future__ import annotations

import atexit
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dspy_top import __version__, config, protocol
from dspy_top.instrumentation.budget import Guard
from dspy_top.instrumentation.hooks import Hooks
from dspy_top.instrumentation.payload import materialize
from dspy_top.instrumentation.recorder import DEFAULT_HISTORY, DEFAULT_HISTORY_BYTES, DEFAULT_QUEUE, Recorder
from dspy_top.instrumentation.redact import known_secrets, scrub
from dspy_top.instrumentation.server import SocketServer

_lock = threading.RLock()
_active: "Instrumentation | None" = None


class Instrumentation:
    """The handle `dspy_top.instrument()` returns."""

    def __init__(self, history: int, queue: int, serve: bool, history_bytes: int = DEFAULT_HISTORY_BYTES) -> None:
        self.recorder = Recorder(history_capacity=history, queue_capacity=queue, history_bytes=history_bytes)
        self.hooks = Hooks(self.recorder)
        self.started_at = time.time()
        self.serve = serve
        self.server: SocketServer | None = None
        self.mechanism = ""
        self.closed = False
        self.stop_reason: str | None = None
        self.guard: Guard | None = None

    def configure(self, prices=None, budget_usd=None, on_exceed=None, module_budgets=None,
                  model_budgets=None) -> None:
        """Prices and budgets: explicit values, else the environment, else the config file."""
        try:
            file = config.load_file()
        except ValueError as exc:
            print(f"dspy-top: ignoring the config file: {exc}", file=sys.stderr)
            file = {}
        self.hooks.prices = config.prices(prices, file)
        budget = config.budget(file)
        limits = {
            "total_usd": budget_usd if budget_usd is not None else budget["usd"],
            "modules": module_budgets if module_budgets is not None else budget["modules"],
            "models": model_budgets if model_budgets is not None else budget["models"],
        }
        if limits["total_usd"] is None and not limits["modules"] and not limits["models"]:
            self.guard = self.hooks.guard = None
            return
        self.guard = Guard(self.recorder, on_exceed=on_exceed or budget["on_exceed"], **limits)
        self.hooks.guard = self.guard

    @property
    def socket_path(self) -> Path | None:
        return self.server.path if self.server is not None else None

    def start(self) -> None:
        try:
            self.mechanism = self.hooks.install()
        except Exception as exc:
            # Never fail the job: it runs uninstrumented, and says why once.
            self.hooks.uninstall()
            self.mechanism = "none"
            print(f"dspy-top: cannot instrument this DSPy ({type(exc).__name__}: {exc})", file=sys.stderr)
            return
        if self.serve:
            self._start_server()

    def _start_server(self) -> None:
        try:
            server = SocketServer(self.recorder, self.hello, materialize, on_stop=self._stop_requested)
            server.start()
            self.server = server
        except Exception as exc:
            # The job runs on without a socket rather than failing; say so once.
            self.server = None
            self.recorder.count_internal_error()
            print(f"dspy-top: cannot serve on a socket ({exc}); recording only", file=sys.stderr)

    def hello(self) -> dict[str, Any]:
        import dspy

        secrets = known_secrets()
        return {
            "t": protocol.HELLO, "v": protocol.PROTOCOL_VERSION, "pid": os.getpid(), "ppid": os.getppid(),
            "argv": scrub(list(sys.argv), secrets), "cwd": os.getcwd(), "executable": sys.executable,
            "started_at": self.started_at, "python": platform.python_version(),
            "dspy": getattr(dspy, "__version__", "?"), "dspy_top": __version__, "mechanism": self.mechanism,
            "history_capacity": self.recorder.history_capacity,
        }

    def stats(self) -> dict[str, Any]:
        return self.recorder.stats()

    def _stop_requested(self, reason: str) -> None:
        self.stop_reason = reason
        if self.guard is None:
            self.guard = self.hooks.guard = Guard(self.recorder)
        self.guard.request_stop(reason)

    def close(self, exit_info: dict[str, Any] | None = None) -> None:
        """Tell viewers the process is done (within ~100 ms), close the socket, remove hooks."""
        if self.closed:
            return
        self.closed = True
        if self.server is not None:
            wait = _env_float("DSPY_TOP_EXIT_WAIT")
            if wait:  # set by `dspy-top run`: a job shorter than the viewer's rescan still gets seen
                self.server.wait_for_viewer(wait)
            self.server.stop(final=exit_info or {"at": time.time()})
        self.hooks.uninstall()

    def _after_fork_in_child(self) -> None:
        # Only resets here: starting a thread inside an at-fork hook can deadlock on locks the
        # parent's threads held at fork time. The child's server starts with its first LM call.
        self.recorder.reset()
        self.started_at = time.time()
        if self.server is not None:
            self.server.abandon_after_fork()
            self.server = None
        if self.serve and not self.closed:
            self.hooks.on_first_call = self._start_server


def instrument(history: int | None = None, queue: int | None = None, serve: bool = True,
               history_bytes: int | None = None, prices=None, budget_usd: float | None = None,
               on_exceed: str | None = None, module_budgets: dict[str, float] | None = None,
               model_budgets: dict[str, float] | None = None) -> Instrumentation:
    """See `dspy_top.instrument`."""
    global _active
    budget_options = dict(prices=prices, budget_usd=budget_usd, on_exceed=on_exceed,
                          module_budgets=module_budgets, model_budgets=model_budgets)
    with _lock:
        if _active is not None and not _active.closed:
            _active.hooks.run_first_call()  # a forked child asking for its socket now
            # Already on (e.g. DSPY_TOP=1): a later call with prices or budgets applies them.
            if any(v is not None for v in budget_options.values()):
                _active.configure(**budget_options)
            return _active
        history = history if history is not None else _env_int("DSPY_TOP_HISTORY", DEFAULT_HISTORY)
        queue = queue if queue is not None else _env_int("DSPY_TOP_QUEUE", DEFAULT_QUEUE)
        if history_bytes is None:
            history_bytes = _env_bytes("DSPY_TOP_HISTORY_BYTES", DEFAULT_HISTORY_BYTES)
        handle = Instrumentation(history, queue, serve, history_bytes)
        handle.configure(**budget_options)
        handle.start()
        _active = handle
        return handle


def active() -> Instrumentation | None:
    return _active


def _env_int(name: str, default: int) -> int:
    try:
        return max(1, int(os.environ.get(name, default)))
    except ValueError:
        return default


def _env_bytes(name: str, default: int) -> int:
    """A size in bytes: `67108864`, or with a binary suffix, `64M`, `512K`, `1G` (`MiB` and `MB` read as `M`)."""
    text = os.environ.get(name, "").strip().upper().removesuffix("B").removesuffix("I")
    if not text:
        return default
    scale = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1], 1)
    try:
        return max(1, int(float(text[:-1] if scale > 1 else text) * scale))
    except ValueError:
        return default


def _env_float(name: str) -> float:
    try:
        return max(0.0, float(os.environ.get(name) or 0))
    except ValueError:
        return 0.0


def _at_exit() -> None:
    handle = _active
    if handle is not None:
        try:
            handle.close()
        except Exception:
            pass


def _after_fork_in_child() -> None:
    handle = _active
    if handle is not None and not handle.closed:
        try:
            handle._after_fork_in_child()
        except Exception:
            pass


atexit.register(_at_exit)
os.register_at_fork(after_in_child=_after_fork_in_child)
