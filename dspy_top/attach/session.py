"""`dspy-top attach PID` and `dspy-top detach PID` from start to end: checks, injection, the job's answer.

The checks read /proc only; the injection goes through gdb (Python 3.11-3.13) or
`sys.remote_exec` (3.14+); the job answers in a result file (bootstrap.py) once its main
thread has run the queued code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dspy_top import client, paths
from dspy_top.attach import gdb, remote_exec
from dspy_top.attach import target as proc
from dspy_top.attach.bootstrap import Request, new_request
from dspy_top.attach.refusals import (
    EXITED,
    FAILED,
    NO_ANSWER,
    NO_DSPY,
    NOT_ATTACHED,
    UNSUPPORTED_DSPY,
    UNSUPPORTED_PYTHON,
    AttachRefused,
)

ANSWER_TIMEOUT = 10.0  # seconds for the job's main thread to run the queued code
POLL = 0.01
NUDGE_AFTER = 0.5  # seconds without an answer before a main thread in a lock wait is woken again
NUDGES = 5  # at most, one a NUDGE_AFTER: each stops the job for a gdb attach (~0.1 s)
FUTEX = 202
# x86-64 system calls a main thread may be blocked in, for the "did not answer" message.
_SYSCALLS = {
    0: "read",
    7: "poll",
    23: "select",
    35: "nanosleep (time.sleep)",
    61: "wait4 (waiting for a child)",
    202: "futex (a lock)",
    230: "clock_nanosleep (time.sleep)",
    232: "epoll_wait (an event loop)",
    270: "pselect6",
    271: "ppoll",
    281: "epoll_pwait (an event loop)",
    45: "recvfrom",
    47: "recvmsg",
    43: "accept",
    288: "accept4",
}


@dataclass
class Outcome:
    """What the job answered, and how long each step took."""

    pid: int
    status: str  # attached, already, detached
    command: str
    result: dict[str, Any]
    socket: Path | None
    timings: dict[str, float] = field(default_factory=dict)


def attach(pid: int, runtime_dir: Path | None = None, timeout: float = ANSWER_TIMEOUT) -> Outcome:
    """Instrument running process `pid`; AttachRefused (with its exit status) when it cannot."""
    started = time.monotonic()
    runtime_dir = runtime_dir or paths.runtime_dir()
    target = proc.inspect_target(pid)
    existing = client.socket_for_pid(pid, runtime_dir)
    if _serving(existing):  # instrumented already: nothing to do, nothing touched
        return Outcome(
            pid, "already", target.command, {"how": "instrumented"}, existing, {"total": time.monotonic() - started}
        )
    request = new_request(pid, "attach", runtime_dir)
    result, timings = _run(target, request, timeout)
    status = result.get("status")
    if status not in ("attached", "already"):
        raise _refusal(pid, result)
    socket = Path(result["socket"]) if result.get("socket") else None
    timings["total"] = time.monotonic() - started
    return Outcome(pid, status, target.command, result, socket, timings)


def detach(pid: int, runtime_dir: Path | None = None, timeout: float = ANSWER_TIMEOUT) -> Outcome:
    """Remove what `attach` put into `pid`: hooks, socket, threads."""
    started = time.monotonic()
    target = proc.inspect_target(pid)
    request = new_request(pid, "detach", runtime_dir)
    result, timings = _run(target, request, timeout)
    if result.get("status") != "detached":
        raise _refusal(pid, result)
    timings["total"] = time.monotonic() - started
    return Outcome(pid, "detached", target.command, result, None, timings)


def _run(target: proc.Target, request: Request, timeout: float) -> tuple[dict[str, Any], dict[str, float]]:
    """Queue the request's code in the job and wait for its answer."""
    started = time.monotonic()
    code = request.code()
    if target.python is not None and target.python >= (3, 14):
        script = request.result_path.with_suffix(".py")
        try:
            queued = remote_exec.queue(target.pid, target.exe, code, script)
            result = _answer(target.pid, request, queued, timeout, started)
        except AttachRefused as refusal:
            if refusal.status != NO_ANSWER:  # still queued: the job reads the file when it gets to it
                script.unlink(missing_ok=True)
            raise
        script.unlink(missing_ok=True)
        return result
    queued = gdb.queue(target.pid, code)
    return _answer(target.pid, request, queued, timeout, started, nudge=gdb.nudge)


def _answer(pid: int, request: Request, queued: dict, timeout: float, started: float, nudge=None):
    """Wait for the job's answer. With `nudge` (gdb), a main thread found in a lock wait after
    NUDGE_AFTER is woken again: it may have entered the wait just after the code was queued."""
    injected = time.monotonic()
    deadline = injected + timeout
    next_nudge, nudges = injected + NUDGE_AFTER, 0
    while True:
        result = request.read_result()
        if result is not None:
            request.forget()
            done = time.monotonic()
            return result, {"inject": injected - started, "answer": done - injected, "queued": queued, "nudges": nudges}
        if not proc.alive(pid):
            raise AttachRefused(f"pid {pid} exited during the attach", EXITED)
        if nudge is not None and nudges < NUDGES and time.monotonic() > next_nudge and _main_syscall(pid) == FUTEX:
            try:
                nudges += nudge(pid)
            except AttachRefused:
                pass  # the process went away or gdb failed: the deadline still holds
            next_nudge = time.monotonic() + NUDGE_AFTER
        if time.monotonic() > deadline:
            raise AttachRefused(
                f"pid {pid}'s main thread did not run Python within {timeout:g}s "
                f"({main_thread_activity(pid)}); the attach stays queued and completes when it "
                f"does: watch for it with `dspy-top -p {pid}`",
                NO_ANSWER,
            )
        time.sleep(POLL)


def _refusal(pid: int, result: dict[str, Any]) -> AttachRefused:
    status = result.get("status")
    if status == "no-dspy":
        return AttachRefused(f"pid {pid} has not imported dspy", NO_DSPY)
    if status == "unsupported-dspy":
        return AttachRefused(
            f"pid {pid} uses DSPy {result.get('dspy')}, which dspy-top does not support (3.4 and 3.5 are)",
            UNSUPPORTED_DSPY,
        )
    if status == "unsupported-python":
        return AttachRefused(
            f"pid {pid} runs Python {result.get('python')}; dspy-top needs 3.11 or newer", UNSUPPORTED_PYTHON
        )
    if status == "old-dspy-top":
        return AttachRefused(
            f"pid {pid} already imported a dspy-top without attach support "
            f"({result.get('path')}); upgrade it in the job's environment",
            FAILED,
        )
    if status == "not-attached":
        how = (
            " (it instruments itself: DSPY_TOP=1, dspy-top run or instrument())"
            if result.get("how") == "instrumented"
            else ""
        )
        return AttachRefused(f"pid {pid} was not attached by `dspy-top attach`{how}", NOT_ATTACHED)
    return AttachRefused(f"pid {pid}: {result.get('message') or status}", FAILED)


def _serving(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    try:
        with client.Connection(socket_path, timeout=2.0):
            return True
    except client.ConnectError:
        return False


def _main_syscall(pid: int) -> int | str:
    """The system call the main thread waits in (from /proc), or "running", "unknown", "waiting"."""
    try:
        fields = (proc.PROC / str(pid) / "syscall").read_text().split()
    except OSError:
        return "unknown"
    if not fields or fields[0] == "running":
        return "running"
    try:
        number = int(fields[0])
    except ValueError:
        return "waiting"
    return "running" if number < 0 else number


def main_thread_activity(pid: int) -> str:
    """What the main thread is doing, from /proc: a system call it waits in, or running."""
    number = _main_syscall(pid)
    if number == "unknown":
        return "what it is doing is unknown"
    if number == "running":
        return "it is running native code"
    if number == "waiting":
        return "it is waiting"
    return f"it waits in {_SYSCALLS.get(number, f'system call {number}')}"
