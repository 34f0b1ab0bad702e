"""The job's side of `dspy-top attach` and `dspy-top detach`, run by the code the viewer injected.

Attach: check the DSPy, instrument exactly as `dspy_top.instrument()` does, count what DSPy's
history already holds (history_backfill.py), join the optimizer runs and evaluations under
way (joined_runs.py), serve the socket where the viewer looks, and write the outcome to the
result file the viewer waits for. Detach undoes all of it: hooks, socket, threads. Both run
on their own thread (the injected code only starts it) and never raise into the job.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dspy_top.instrumentation import runtime
from dspy_top.instrumentation.history_backfill import HistoryBackfill
from dspy_top.instrumentation.joined_runs import JoinedRuns

# The DSPy versions dspy-top supports, as pyproject.toml pins them: [first, last) minor versions.
SUPPORTED_DSPY = ((3, 4), (3, 6))
WATCH_EVERY = 0.5  # seconds between the watcher's looks at calls and runs from before the attach

_lock = threading.Lock()
_session: Session | None = None


class Session:
    """One attach: the instrumentation it started and what still watches the job's earlier work."""

    def __init__(self, handle, backfill: HistoryBackfill, joined: JoinedRuns, fallback: str | None) -> None:
        self.handle = handle
        self.backfill = backfill
        self.joined = joined
        self.fallback = fallback  # the sys.path entry the injected code added, removed at detach
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def watch(self) -> None:
        """Until the calls in flight and the runs under way at attach are over (then the thread ends)."""
        if self.backfill.watching or self.joined.runs:
            self._watcher = threading.Thread(target=self._watch, name="dspy-top-attach-watch", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_EVERY):
            try:
                settled = self.backfill.settle()
                settled = self.joined.settle() and settled
            except Exception:
                self.handle.recorder.count_internal_error()
                settled = False
            if settled:
                return

    def close(self) -> None:
        self._stop.set()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(2.0)
        self.backfill.close()
        self.joined.close()
        self.handle.close({"at": time.time(), "detached": True})
        with runtime._lock:
            if runtime._active is self.handle:
                runtime._active = None  # a later attach (or instrument()) starts afresh
        if self.fallback is not None:
            try:
                sys.path.remove(self.fallback)
            except ValueError:
                pass


def handle(request: dict[str, Any]) -> None:
    """What the injected code calls, on its own thread: do `request["action"]`, then write the result."""
    release_code_page(request.get("code_page"))
    try:
        if request.get("action") == "detach":
            result = detach()
        else:
            result = attach(request)
    except BaseException as exc:  # the job must never see it
        result = {"status": "error", "message": f"{type(exc).__name__}: {exc}"[:500]}
    result.setdefault("pid", os.getpid())
    write_result(request.get("result"), result)


def attach(request: dict[str, Any]) -> dict[str, Any]:
    global _session
    dspy = sys.modules.get("dspy")
    if dspy is None or not hasattr(dspy, "LM"):
        return {"status": "no-dspy"}
    version = str(getattr(dspy, "__version__", "?"))
    if not supported_dspy(version):
        return {"status": "unsupported-dspy", "dspy": version}
    with _lock:
        if _session is not None and not _session.handle.closed:
            return {"status": "already", "how": "attached", "socket": str(_session.handle.socket_path)}
        active = runtime.active()
        if active is not None and not active.closed:
            socket_path = active.socket_path
            return {"status": "already", "how": "instrumented", "socket": str(socket_path) if socket_path else None}
        _preload()
        backfill = HistoryBackfill()
        backfill.watch()  # before the hooks: every call they miss is one DSPy's own execute runs
        instrumentation = runtime.instrument(serve=False)
        if instrumentation.mechanism == "none":
            backfill.close()
            with runtime._lock:
                if runtime._active is instrumentation:
                    runtime._active = None
            return {"status": "unsupported-dspy", "dspy": version}
        instrumentation.started_at = process_started_at() or instrumentation.started_at  # the job's real uptime
        backfill.bind(instrumentation.recorder, instrumentation.hooks.prices)
        before = backfill.count_recorded()
        joined = JoinedRuns(instrumentation.hooks)
        runs = joined.join()
        try:
            serve(instrumentation, Path(request["runtime_dir"]))
        except Exception as exc:
            session = Session(instrumentation, backfill, joined, None)
            session.close()
            return {"status": "error", "message": f"cannot serve the socket: {exc}"}
        session = Session(instrumentation, backfill, joined, request.get("fallback_added"))
        session.watch()
        _session = session
    return {
        "status": "attached",
        "socket": str(instrumentation.socket_path),
        "before_attach": before,
        "joined": runs,
        "mechanism": instrumentation.mechanism,
        "dspy": version,
        "python": platform.python_version(),
    }


def detach() -> dict[str, Any]:
    global _session
    with _lock:
        session, _session = _session, None
    if session is None:
        active = runtime.active()
        if active is not None and not active.closed:
            return {"status": "not-attached", "how": "instrumented"}
        return {"status": "not-attached"}
    session.close()
    return {"status": "detached"}


def serve(instrumentation, directory: Path) -> None:
    """Start the socket server in the viewer's runtime directory (the job's environment may name another)."""
    from dspy_top.instrumentation.payload import materialize, secrets_of
    from dspy_top.instrumentation.server import SocketServer

    server = SocketServer(
        instrumentation.recorder,
        instrumentation.hello,
        materialize,
        on_stop=instrumentation._stop_requested,
        settings=instrumentation.settings,
        secrets_of=secrets_of,
    )
    server.path = directory / server.path.name
    server.start()
    instrumentation.server = server
    instrumentation.serve = True  # as instrument() would: a forked child serves too


def process_started_at() -> float | None:
    """When this process started (epoch seconds), from /proc; None elsewhere."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            ticks = int(handle.read().rsplit(b")", 1)[1].split()[19])  # field 22, starttime
        with open("/proc/stat", "rb") as handle:
            boot = next(int(line.split()[1]) for line in handle if line.startswith(b"btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def supported_dspy(version: str) -> bool:
    try:
        parts = tuple(int(p) for p in version.split(".")[:2])
    except ValueError:
        return False
    return SUPPORTED_DSPY[0] <= parts < SUPPORTED_DSPY[1]


def _preload() -> None:
    """Import what instrumenting imports, so that the steps between the hooks and the history count wait on no file."""
    from dspy_top.instrumentation import lm_calls, payload, scopes, server  # noqa: F401


def write_result(path: str | None, result: dict[str, Any]) -> None:
    """The outcome for `dspy-top attach`, written whole (a temporary file, then renamed)."""
    if not path:
        return
    try:
        temporary = f"{path}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(result, out, default=str)
        os.replace(temporary, path)
    except OSError:
        pass


def release_code_page(page: Any) -> None:
    """Unmap the page the debugger wrote the injected code into (it was parsed before this ran)."""
    if not (isinstance(page, (list, tuple)) and len(page) == 2 and all(isinstance(v, int) and v > 0 for v in page)):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        munmap = libc.munmap
        munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        munmap.restype = ctypes.c_int
        munmap(page[0], page[1])
    except Exception:
        pass
