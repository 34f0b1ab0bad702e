"""The `dspy-top attach` and `dspy-top detach` subcommands: one line of outcome, a distinct exit status."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dspy_top.attach.refusals import OK, USAGE, AttachRefused, status_table

ATTACH_DESCRIPTION = """\
Instrument a running Python process of yours that has imported dspy but was started without
dspy-top, exactly as dspy_top.instrument() would, then exit once it serves its socket: any
dspy-top viewer then sees it. What DSPy's own history recorded before the attach is counted
("412 calls before attach, from DSPy's history"), and a compile() or Evaluate already running
shows as an optimizer run. Attaching twice is harmless.

Python 3.11-3.13 are attached through gdb (the job stops for tens of milliseconds); 3.14+
through sys.remote_exec. The code runs in the job's main thread at its next chance to run
Python (a lock wait is interrupted for it, as a signal would).
"""
DETACH_DESCRIPTION = """\
Undo `dspy-top attach PID`: remove the hooks, the socket and dspy-top's threads from the job,
which then runs as if it had never been attached.
"""
EPILOG = f"""\
examples:
  dspy-top attach 41822            attach, then watch it with: dspy-top -p 41822
  dspy-top attach --watch 41822    attach and open the live view (same as dspy-top -p 41822 --attach)
  dspy-top detach 41822

exit status:
{status_table()}
"""


def build_parser(action: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"dspy-top {action}",
        description=ATTACH_DESCRIPTION if action == "attach" else DETACH_DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pid", type=int, metavar="PID", help="the process")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long the job's main thread may take to run the queued code (default 10)",
    )
    if action == "attach":
        parser.add_argument("-w", "--watch", action="store_true", help="then open the live view of the process")
        parser.add_argument(
            "-d",
            "--delay",
            type=float,
            default=1.0,
            metavar="SECONDS",
            help="with --watch: seconds between screen updates (default 1)",
        )
    return parser


def main(argv: list[str], action: str = "attach") -> int:
    parser = build_parser(action)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return USAGE if exc.code else OK
    try:
        return _run(args, action)
    except KeyboardInterrupt:
        # gdb runs in its own session: it finishes and detaches; the job is never left stopped.
        print(f"dspy-top: {action} interrupted; the job keeps running", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, action: str) -> int:
    if action == "detach":
        return detach_command(args.pid, args.timeout)
    status = attach_command(args.pid, args.timeout)
    if status != OK or not args.watch:
        return status
    from dspy_top.sources.local import local_sockets
    from dspy_top.viewer.app import run_viewer

    return run_viewer([local_sockets(pids=[args.pid])], delay=args.delay)


def attach_command(pid: int, timeout: float = 10.0, runtime_dir: Path | None = None) -> int:
    """Attach and say what happened on stderr; the exit status."""
    from dspy_top.attach.session import attach

    try:
        outcome = attach(pid, runtime_dir=runtime_dir, timeout=timeout)
    except AttachRefused as refusal:
        print(f"dspy-top: {refusal}", file=sys.stderr)
        return refusal.status
    if outcome.status == "already":
        where = f" (socket {outcome.socket})" if outcome.socket else ""
        print(f"dspy-top: pid {pid} is already instrumented{where}", file=sys.stderr)
        return OK
    from dspy_top.attach.describe import describe_attached

    print(f"dspy-top: {describe_attached(outcome)}", file=sys.stderr)
    return OK


def detach_command(pid: int, timeout: float = 10.0, runtime_dir: Path | None = None) -> int:
    from dspy_top.attach.session import detach

    try:
        detach(pid, runtime_dir=runtime_dir, timeout=timeout)
    except AttachRefused as refusal:
        print(f"dspy-top: {refusal}", file=sys.stderr)
        return refusal.status
    print(f"dspy-top: detached from pid {pid}", file=sys.stderr)
    return OK
