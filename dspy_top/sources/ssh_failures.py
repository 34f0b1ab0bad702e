"""Why `ssh HOST dspy-top relay` did not work, in words a user can act on.

ssh says everything on stderr and in its exit status (255: ssh's own failure; otherwise the
remote command's status); the relay may have said more (its `error` frame, or output that
was no relay at all). `explain` turns what one attempt left into one line: host unreachable,
login refused, host key unknown, dspy-top missing or too old, or whatever ssh said last.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

SSH_FAILED = 255  # ssh's own exit status for its failures (the remote command's status otherwise)
COMMAND_NOT_FOUND = 127  # the remote shell's status for a command it cannot find
USAGE = 2  # argparse's status: an old dspy-top without `relay` says its usage and exits 2
MOST = 300  # characters of ssh's message kept in ours

_NOISE = (
    "Warning: Permanently added",
    "** WARNING: connection is not using a post-quantum",
    "** This session may be vulnerable",
    "** The server may need to be upgraded",
)
_AUTH = (
    "Permission denied",
    "Too many authentication failures",
    "Authentication failed",
    "no more authentication methods",
)
_HOST_KEY = (
    "Host key verification failed",
    "REMOTE HOST IDENTIFICATION HAS CHANGED",
    "host key is known",
    "Host key for",
)
_UNREACHABLE = (
    "Could not resolve hostname",
    "Name or service not known",
    "Connection refused",
    "timed out",
    "No route to host",
    "Network is unreachable",
    "Connection closed by",
    "Connection reset",
    "kex_exchange_identification",
    "Temporary failure in name resolution",
    "Broken pipe",
    "not responding",
)
_MISSING = ("command not found", "No such file or directory", "not found")
_TOO_OLD = ("unrecognized arguments", "invalid choice")


@dataclass(frozen=True)
class Attempt:
    """What one run of `ssh HOST RELAY_COMMAND` left behind."""

    host: str
    relay_command: str
    code: int | None  # ssh's exit status; negative: the signal that ended it; None: unknown
    stderr: str  # its last few KiB
    connected: bool = False  # the relay said hello and the versions matched
    output: bytes = b""  # the first bytes of its stdout, when they were no relay's hello
    refused: str | None = None  # the relay's own `error` frame, or why the versions do not match


def explain(attempt: Attempt) -> str:
    """One line saying why the attempt ended, most specific first."""
    host = attempt.host
    if attempt.refused is not None:
        return attempt.refused
    line = telling_line(attempt.stderr)
    said = f" ({line})" if line else ""
    code = attempt.code
    if attempt.output and not attempt.connected:
        return (
            f"{host} did not answer as a dspy-top relay: its output began {attempt.output[:60]!r} "
            "(does a login script print to stdout?)"
        )
    if code == SSH_FAILED:
        if _has(line, _AUTH):
            return (
                f"{host} refused the login{said}: dspy-top runs ssh in batch mode, so the key must work "
                "without a prompt (an ssh-agent, or IdentityFile in ~/.ssh/config)"
            )
        if _has(line, _HOST_KEY):
            return f"{host}'s host key is not known or has changed{said}: connect once with `ssh {host}` to check it"
        if _has(line, _UNREACHABLE):
            return f"cannot reach {host}{said}" if not attempt.connected else f"the ssh connection broke{said}"
        return f"ssh to {host} failed{said or ' (exit status 255)'}"
    if code is not None and code < 0:
        return f"ssh was ended by {_signal_name(-code)}"
    if not attempt.connected:
        if code == COMMAND_NOT_FOUND or (_has(line, _MISSING) and "dspy-top" in line):
            return (
                f"dspy-top is not installed on {host}, or not on the PATH of commands run over ssh{said}: "
                f"install it there (pip install dspy-top), or give its path with --relay-command "
                f"'/path/to/dspy-top relay'"
            )
        if code == USAGE and _has(line, _TOO_OLD):
            return (
                f"dspy-top on {host} is too old for --host: it has no `dspy-top relay`{said}; "
                "upgrade it there (pip install -U dspy-top)"
            )
    if code == 0:
        return f"`{attempt.relay_command}` on {host} ended"
    status = "" if code is None else f" with exit status {code}"
    return f"`{attempt.relay_command}` on {host} ended{status}{said}"


def telling_line(stderr: str) -> str:
    """The last line of stderr that says something (ssh's notices about known hosts do not)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(_NOISE)] or lines
    if not useful:
        return ""
    line = useful[-1]
    return line if len(line) <= MOST else line[: MOST - 1] + "…"


def _has(line: str, needles: tuple[str, ...]) -> bool:
    return any(needle in line for needle in needles)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
