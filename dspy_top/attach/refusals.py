"""Why `dspy-top attach` or `detach` did not do it: one line each, and a distinct exit status.

The table below is what `--help` and README's "Attaching" section list.
"""

from __future__ import annotations

OK = 0
FAILED = 1  # anything else; the message says what
USAGE = 2
NO_PROCESS = 3
NOT_YOURS = 4
PTRACE_DENIED = 5
NO_GDB = 6
NOT_PYTHON = 7
NO_DSPY = 8
UNSUPPORTED_PYTHON = 9
UNSUPPORTED_DSPY = 10
EXITED = 11
NO_ANSWER = 12
BUSY = 13
NOT_ATTACHED = 14

STATUSES = (
    (OK, "attached (or already instrumented); detach: detached"),
    (FAILED, "the attach failed otherwise (the message says why)"),
    (USAGE, "usage error"),
    (NO_PROCESS, "no such process"),
    (NOT_YOURS, "the process belongs to another user"),
    (
        PTRACE_DENIED,
        "ptrace is not permitted (kernel.yama.ptrace_scope, a container without CAP_SYS_PTRACE, "
        "a non-dumpable process)",
    ),
    (NO_GDB, "gdb is not installed (needed for Python 3.11-3.13)"),
    (NOT_PYTHON, "not a Python process"),
    (NO_DSPY, "the process has not imported dspy"),
    (UNSUPPORTED_PYTHON, "a Python dspy-top does not support (before 3.11)"),
    (UNSUPPORTED_DSPY, "a DSPy version dspy-top does not support"),
    (EXITED, "the process exited during the attach"),
    (
        NO_ANSWER,
        "the job's main thread did not run Python in time (the attach stays queued and completes when it does)",
    ),
    (BUSY, "no thread of the job was waiting in a system call; try again"),
    (NOT_ATTACHED, "detach: the process was not attached by `dspy-top attach`"),
)


class AttachRefused(Exception):
    """The attach (or detach) cannot be done; `status` is the exit status, the message one line."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def status_table(indent: str = "  ") -> str:
    """The exit statuses, for `--help`."""
    return "\n".join(f"{indent}{status:>2}  {meaning}" for status, meaning in STATUSES)
