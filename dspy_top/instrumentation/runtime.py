"""`instrument()`: wires the recorder, the DSPy hooks and the socket server together, once per process.

Also makes the process fork-aware (a forked child starts from zero with its own
socket and its own recording), drains to viewers at exit (multiprocessing children too:
process_exit.py), records what it serves when asked to (recording.py), and reads every
setting through `config.job_settings`: a bad one is reported once on stderr and ignored,
never raised into the job.
"""

from __future__ import annotations

import atexit
import functools
import os
import platform
import re
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from dspy_top import config, protocol
from dspy_top.config import JobSettings
from dspy_top.instrumentation import process_exit
from dspy_top.instrumentation.budget import Guard
from dspy_top.instrumentation.hooks import Hooks
from dspy_top.instrumentation.payload import materialize, secrets_of
from dspy_top.instrumentation.recorder import Recorder
from dspy_top.instrumentation.server import SocketServer
from dspy_top.version import __version__

_lock = threading.RLock()
_active: Instrumentation | None = None
# How long `recording_path` waits for the server thread to open the recording.
RECORDING_OPEN_WAIT = 2.0
# Payloads kept for a recording to take (at least): a job making 2,500 calls a second has 1.6 s
# of them, while the server thread waits its turn for the GIL (benchmarks/README.md, Recordings).
# Past the history's calls, the ring holds only those the recording has not taken (payload_ring.py).
RECORDING_PAYLOADS = 4096
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")  # as recording.runs.script_safe: a run id names its log file


def run_id() -> str:
    """What groups the processes of one job (`dspy-top run` sets DSPY_TOP_RUN_ID for all of
    them); else this process's own, which its forked children keep."""
    given = _UNSAFE.sub("_", os.environ.get("DSPY_TOP_RUN_ID", "")).strip("._")[:64]
    return given or uuid.uuid4().hex[:16]


class Instrumentation:
    """The handle `dspy_top.instrument()` returns."""

    def __init__(self, settings: JobSettings, serve: bool) -> None:
        self.settings = settings
        self.recorder = Recorder(
            history_capacity=settings.history,
            queue_capacity=settings.queue,
            history_bytes=settings.history_bytes,
            payload_capacity=RECORDING_PAYLOADS if settings.record else None,
        )
        self.hooks = Hooks(self.recorder)
        self.started_at = time.time()
        self.serve = serve
        self.server: SocketServer | None = None
        self.mechanism = ""
        self.closed = False
        self.stop_reason: str | None = None
        self.guard: Guard | None = None
        self.run_id = run_id()
        self.recording: Any = None  # recording.JobRecording, once recording

    def configure(self, settings: JobSettings) -> None:
        """Prices and budgets (checked already: see `config.job_settings`)."""
        self.settings = settings
        self.hooks.prices = settings.prices
        if settings.budget_usd is None and not settings.module_budgets and not settings.model_budgets:
            self.guard = self.hooks.guard = None
            return
        try:
            self.guard = Guard(
                self.recorder,
                total_usd=settings.budget_usd,
                on_exceed=settings.on_exceed,
                modules=settings.module_budgets,
                models=settings.model_budgets,
            )
        except Exception as exc:
            warn(f"ignoring the budget ({exc})")
            self.guard = None
        self.hooks.guard = self.guard

    @property
    def socket_path(self) -> Path | None:
        return self.server.path if self.server is not None else None

    @property
    def recording_path(self) -> Path | None:
        """The file this process records to (None when it does not, or could not open one)."""
        recording = self.recording
        if recording is None:
            return None
        recording.opened.wait(RECORDING_OPEN_WAIT)  # the server thread opens it at its next tick
        return recording.path if recording.failed is None else None

    def start(self) -> None:
        try:
            self.mechanism = self.hooks.install()
        except Exception as exc:
            # Never fail the job: it runs uninstrumented, and says why once.
            self.hooks.uninstall()
            self.mechanism = "none"
            warn(f"cannot instrument this DSPy ({type(exc).__name__}: {exc})")
            return
        if self.serve:
            self._start_server()

    def _start_server(self) -> None:
        try:
            server = SocketServer(
                self.recorder,
                self.hello,
                materialize,
                on_stop=self._stop_requested,
                settings=self.settings,
                secrets_of=secrets_of,
            )
            server.start()
            self.server = server
        except Exception as exc:
            # The job runs on without a socket rather than failing; say so once.
            self.server = None
            self.recorder.count_internal_error()
            warn(f"cannot serve on a socket ({exc}); counting only, nothing is served or recorded")
            return
        if self.settings.record:
            self.start_recording()

    def start_recording(self) -> None:
        """Record what the server serves, from now on (the file starts with a snapshot of the process)."""
        server = self.server
        if server is None or self.recording is not None:
            return
        from dspy_top.instrumentation.recording import JobRecording  # only a recording job needs it

        settings = self.settings
        self.recording = recording = JobRecording(
            settings.record,
            settings.record_cap,
            settings.record_keep,
            sys.argv,
            self.started_at,
            server.payload_of,
            functools.partial(self.recorder.payloads_of, take=True),
            warn,
            functools.partial(server.packed_payloads, take=self.recorder.take_payloads),
            self.recorder.handoff,
        )

        def start(hello: dict[str, Any], snapshot: dict[str, Any]) -> None:
            if recording.closed or self.recording is not recording:
                recording.opened.set()
                return
            if recording.start(hello, snapshot):
                server.taps.append(recording.take)
                server.tickers.append(recording.tick)

        server.join(start)

    def hello(self) -> dict[str, Any]:
        """Who this process is (the server redacts it, like everything it sends)."""
        import dspy

        try:
            cwd = os.getcwd()
        except OSError:
            cwd = "?"
        return {
            "t": protocol.HELLO,
            "v": protocol.PROTOCOL_VERSION,
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "argv": list(sys.argv),
            "cwd": cwd,
            "executable": sys.executable,
            "started_at": self.started_at,
            "python": platform.python_version(),
            "dspy": getattr(dspy, "__version__", "?"),
            "dspy_top": __version__,
            "mechanism": self.mechanism,
            "history_capacity": self.recorder.history_capacity,
            "run_id": self.run_id,
            **self._recording_named(),
        }

    def _recording_named(self) -> dict[str, str]:
        """Where this process records, once the file is open: a viewer reads a payload from there
        after the process ended (or when the process no longer holds it)."""
        recording = self.recording
        if recording is None or recording.path is None or recording.failed is not None:
            return {}
        return {"recording": str(recording.path)}

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
            wait = self.settings.exit_wait
            if wait:  # set by `dspy-top run`: a job shorter than the viewer's rescan still gets seen
                self.server.wait_for_viewer(wait)
            self.server.stop(final={**(exit_info or {"at": time.time()}), **self._recording_named()})
        self.hooks.uninstall()

    def push_totals(self) -> None:
        """Send the totals to viewers now (a pool worker that may be terminated after its task)."""
        if self.server is not None and not self.closed:
            self.server.push_totals()

    def _after_fork_in_child(self) -> None:
        # Only resets here: starting a thread inside an at-fork hook can deadlock on locks the
        # parent's threads held at fork time. The child's server starts with its first LM call.
        self.recorder.reset()
        self.started_at = time.time()
        if self.recording is not None:
            self.recording.abandon_after_fork()
            self.recording = None
        if self.server is not None:
            self.server.abandon_after_fork()
            self.server = None
        if self.serve and not self.closed:
            self.hooks.on_first_call = self._start_server


def instrument(
    history: int | None = None,
    queue: int | None = None,
    serve: bool = True,
    history_bytes: int | None = None,
    prices=None,
    budget_usd: float | None = None,
    on_exceed: str | None = None,
    module_budgets: dict[str, float] | None = None,
    model_budgets: dict[str, float] | None = None,
    record=None,
) -> Instrumentation | Unavailable:
    """See `dspy_top.instrument`. Never raises: a bad setting is reported once and ignored."""
    global _active
    budget_options = dict(
        prices=prices,
        budget_usd=budget_usd,
        on_exceed=on_exceed,
        module_budgets=module_budgets,
        model_budgets=model_budgets,
    )
    explicit = dict(budget_options, history=history, queue=queue, history_bytes=history_bytes, record=record)
    try:
        with _lock:
            if _active is not None and not _active.closed:
                _active.hooks.run_first_call()  # a forked child asking for its socket now
                # Already on (e.g. DSPY_TOP=1): a later call with prices or budgets applies them,
                # and one with `record` starts recording (unless it records already).
                if any(v is not None for v in budget_options.values()) or record is not None:
                    recording = _active.recording
                    _active.configure(settings(explicit))
                    if _active.settings.record and recording is None:
                        _active.start_recording()
                    elif record and recording is not None and _active.settings.record != recording.record:
                        warn(
                            f"already recording (to {recording.path or recording.record}); record={record!r} is ignored"
                        )
                return _active
            handle = Instrumentation(settings(explicit), bool(serve))
            if handle.settings.record and not serve:
                warn("recording needs the server thread: instrument(serve=False) does not record")
            handle.configure(handle.settings)
            handle.start()
            _active = handle
            process_exit.install(_at_exit, _push_totals)
            return handle
    except Exception as exc:
        warn(f"cannot instrument this process ({type(exc).__name__}: {exc})")
        return _active if _active is not None else Unavailable()


class Unavailable:
    """What `instrument()` returns when it could not instrument: the same questions, no answers."""

    socket_path = None
    recording_path = None
    closed = True
    mechanism = "none"

    def stats(self) -> dict[str, Any]:
        return {}

    def close(self, exit_info: dict[str, Any] | None = None) -> None:
        pass


def settings(explicit: dict[str, Any]) -> JobSettings:
    """The job's settings; each problem with them said once on stderr."""
    try:
        checked, problems = config.job_settings(explicit)
    except Exception as exc:  # a bug in checking must not cost the job either
        warn(f"cannot read the settings ({type(exc).__name__}: {exc}); using the defaults")
        return JobSettings()
    for problem in problems:
        warn(f"ignoring a bad setting: {problem}")
    return checked


_warned: set[str] = set()


def warn(message: str) -> None:
    """One line on stderr, once per process for each message."""
    if message in _warned:
        return
    _warned.add(message)
    try:
        print(f"dspy-top: {message}", file=sys.stderr, flush=True)
    except Exception:
        pass


def active() -> Instrumentation | None:
    return _active


def _push_totals() -> None:
    handle = _active
    if handle is not None:
        try:
            handle.push_totals()
        except Exception:
            pass


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
