"""`dspy-top relay`: stream this user's instrumented processes on stdout, take requests on stdin.

Run by `dspy-top --host HOST` as `ssh HOST dspy-top relay`; any other tool may run it the
same way (docs/protocol.md, "The relay"). It watches the runtime directory exactly as a
viewer on this machine would (the same `LocalSockets`, with this user's rights) and ends
when stdin closes.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

DESCRIPTION = """\
Stream this user's instrumented DSPy processes over stdin/stdout, for a viewer on another
machine: `dspy-top --host HOST` runs `ssh HOST dspy-top relay`. The stream is binary
(length-prefixed msgpack frames, docs/protocol.md, "The relay"): run it from a program, not
in a terminal. It sees what a viewer run here would (this user's jobs, in DSPY_TOP_RUNTIME_DIR
or the per-user runtime directory), opens no port, and ends when stdin closes.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dspy-top relay", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--hello-timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="give up when the viewer has not said hello within SECONDS (default 30)",
    )
    return parser


def main(argv: list[str], version: str) -> int:
    """`dspy-top relay ARGV`; `version` is this dspy-top's (the relay imports no more of it than it needs)."""
    args = build_parser().parse_args(argv)
    if os.isatty(1):
        print(
            "dspy-top relay: stdout is a terminal; the relay speaks a binary protocol for `dspy-top --host` "
            "and other programs (docs/protocol.md), not for a terminal",
            file=sys.stderr,
        )
        return 2
    # The frames get fd 1 to themselves: anything printed by mistake (a library's warning) goes to
    # stderr instead, never into the stream.
    frames = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    from dspy_top import paths
    from dspy_top.relay.loop import Relay
    from dspy_top.sources import relay_wire
    from dspy_top.sources.local import local_sockets

    located = paths.locate()
    hello = relay_wire.relay_hello(
        host=socket.gethostname(), where=str(located.path), pid=os.getpid(), version=version, warning=located.warning
    )
    relay = Relay(
        local_sockets(directory=located.path), hello, stdin=0, stdout=frames, hello_timeout=args.hello_timeout
    )
    try:
        return relay.run()
    except KeyboardInterrupt:
        return 130
