"""Python 3.14 and newer: queue the injected code with `sys.remote_exec` (PEP 768), no debugger.

`sys.remote_exec` must run on the same minor version as the job, so it runs in the job's own
interpreter (`/proc/PID/exe`), whatever Python dspy-top itself runs on. The job's main thread
runs the file at its next safe point, as it handles signals. Untested here: this machine has
Python 3.11 only.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from dspy_top.attach import target as proc
from dspy_top.attach.refusals import EXITED, FAILED, PTRACE_DENIED, AttachRefused

CALL = "import sys; sys.remote_exec(int(sys.argv[1]), sys.argv[2])"


def queue(pid: int, executable: str, code: str, script: Path, timeout: float = 30.0) -> dict:
    """Write `code` to `script` (in the private runtime dir) and have the job run it."""
    script.write_text(code.replace("CODE_PAGE", "None"))
    script.chmod(0o600)
    try:
        done = subprocess.run(
            [executable, "-I", "-S", "-c", CALL, str(pid), str(script)],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AttachRefused(f"sys.remote_exec with {executable} failed: {exc}", FAILED) from None
    if done.returncode == 0:
        return {"status": "queued", "method": "sys.remote_exec"}
    error = (done.stderr.strip().splitlines() or ["?"])[-1]
    if not proc.alive(pid):
        raise AttachRefused(f"pid {pid} exited during the attach", EXITED)
    if "PermissionError" in error or "Operation not permitted" in error:
        raise AttachRefused(f"cannot trace pid {pid}: {proc.ptrace_hint(pid)}", PTRACE_DENIED)
    # e.g. remote debugging disabled in the job (PYTHON_DISABLE_REMOTE_DEBUG, -X disable_remote_debug)
    raise AttachRefused(f"sys.remote_exec refused: {error}", FAILED)
