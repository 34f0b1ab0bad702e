"""Python 3.11-3.13: queue the injected code in the job through gdb (see gdb_script.py for how).

The addresses gdb needs are worked out first, from the process's files (symbols.py), while it
runs; gdb then loads no symbols and no thread library, so the job stays stopped for tens of
milliseconds, not seconds.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

from dspy_top.attach import target as proc
from dspy_top.attach.refusals import (
    BUSY,
    EXITED,
    FAILED,
    NO_GDB,
    NOT_PYTHON,
    PTRACE_DENIED,
    UNSUPPORTED_PYTHON,
    AttachRefused,
)
from dspy_top.attach.symbols import SymbolError, addresses

SCRIPT = Path(__file__).with_name("gdb_script.py")
GDB_TIMEOUT = 30.0  # seconds: attach, two calls and detach take well under one
MARKER = "DSPY_TOP_GDB "
_STATUSES = {"not-python": NOT_PYTHON, "unsupported-python": UNSUPPORTED_PYTHON, "busy": BUSY, "exited": EXITED}


def gdb_path() -> str:
    found = shutil.which("gdb")
    if found is None:
        raise AttachRefused(
            "gdb is not installed; attaching to Python 3.11-3.13 needs it (Debian/Ubuntu: `sudo apt-get install gdb`)",
            NO_GDB,
        )
    return found


def queue(pid: int, code: str, timeout: float = GDB_TIMEOUT) -> dict:
    """Queue `code` as a pending call in `pid`; what gdb_script.py reported (status `queued`)."""
    executable = gdb_path()
    try:
        where = addresses(pid)  # while the job runs: gdb itself then reads no symbols
    except FileNotFoundError:
        raise AttachRefused(f"pid {pid} exited", EXITED) from None
    except PermissionError:
        raise AttachRefused(f"cannot trace pid {pid}: {proc.ptrace_hint(pid)}", PTRACE_DENIED) from None
    except (SymbolError, OSError, ValueError) as exc:
        raise AttachRefused(f"pid {pid}: {exc}", NOT_PYTHON) from None
    if where.python is None or where.python < (3, 11):
        version = "older than 3.11" if where.python is None else f"{where.python[0]}.{where.python[1]}"
        raise AttachRefused(f"pid {pid} runs Python {version}; dspy-top needs 3.11 or newer", UNSUPPORTED_PYTHON)
    outcome = _run_gdb(executable, pid, {"code": code, "addresses": where.as_request()}, timeout)
    status = outcome.get("status")
    if status == "queued":
        return outcome
    message = outcome.get("message") or status
    if status in _STATUSES:
        raise AttachRefused(f"pid {pid}: {message}", _STATUSES[status])
    raise AttachRefused(f"pid {pid}: {message}", FAILED)


def nudge(pid: int, timeout: float = GDB_TIMEOUT) -> bool:
    """Wake `pid`'s main thread from a futex wait (EINTR), so that it runs the queued code; whether
    it was waiting in one. Stops the job for as long as gdb's attach and detach take."""
    outcome = _run_gdb(gdb_path(), pid, {"nudge": True}, timeout)
    if outcome.get("status") not in ("nudged", "not-parked"):
        raise AttachRefused(
            f"pid {pid}: {outcome.get('message') or outcome.get('status')}",
            _STATUSES.get(outcome.get("status"), FAILED),
        )
    return outcome["status"] == "nudged"


def _run_gdb(executable: str, pid: int, request: dict, timeout: float) -> dict:
    """Run gdb_script.py's main() attached to `pid` with `request`; what it reported."""
    command = [
        executable,
        "-nx",
        "-batch",
        "--readnever",
        "-iex",
        "set auto-solib-add off",
        "-iex",
        "set debuginfod enabled off",
        "-iex",
        "set auto-load off",
        "-iex",
        "set auto-load libthread-db off",
        "-iex",
        "set libthread-db-search-path",  # threads come from /proc; no thread library needed
        "-iex",
        f"source {SCRIPT}",  # compiled and its imports done before the job stops
        "-p",
        str(pid),
        "-ex",
        "python main()",
    ]
    env = {**os.environ, "DSPY_TOP_INJECT": json.dumps(request)}
    for name in ("PYTHONPATH", "PYTHONHOME"):  # gdb's own Python must not see this virtualenv's
        env.pop(name, None)
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # An interrupt makes gdb stop the job, end the script and detach; a kill is the last resort.
        process.send_signal(signal.SIGINT)
        try:
            out, err = process.communicate(timeout=5.0)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
        raise AttachRefused(f"gdb did not finish within {timeout:g}s: {_last_line(err)}", FAILED) from None
    outcome = _parse(out)
    if outcome is None:
        raise _failure(pid, out, err)
    return outcome


def _parse(out: str) -> dict | None:
    for line in reversed(out.splitlines()):
        if line.startswith(MARKER):
            try:
                return json.loads(line[len(MARKER) :])
            except ValueError:
                return None
    return None


def _failure(pid: int, out: str, err: str) -> AttachRefused:
    """gdb ended without our report: it could not attach, or the process went away."""
    text = f"{out}\n{err}"
    if not proc.alive(pid) or "No such process" in text:
        return AttachRefused(f"pid {pid} exited during the attach", EXITED)
    if "ptrace:" in text or "Operation not permitted" in text:
        return AttachRefused(f"cannot trace pid {pid}: {proc.ptrace_hint(pid)}", PTRACE_DENIED)
    return AttachRefused(f"gdb could not attach to pid {pid}: {_last_line(err) or _last_line(out)}", FAILED)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip() and not line.startswith("warning")]
    return lines[-1] if lines else "(no output)"
