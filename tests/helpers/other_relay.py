"""`dspy-top relay` as another release of dspy-top would run it, for the version tests over sshd.

    python other_relay.py --relay-versions 2 --dspy-top 9.0.0     a newer relay protocol
    python other_relay.py --protocol 1 --dspy-top 0.0.9           an older process protocol
    python other_relay.py --before-relay                          a dspy-top from before `relay`

The real relay (dspy_top/relay/), with only the version numbers it announces changed; or, with
`--before-relay`, the real command line without the `relay` subcommand, which refuses the word
as any dspy-top released before it does (its usage, exit status 2).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dspy_top import protocol  # noqa: E402
from dspy_top.sources import relay_wire  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--relay-versions", type=lambda text: tuple(int(v) for v in text.split(",")))
    parser.add_argument("--protocol", type=int)
    parser.add_argument("--dspy-top", default="0.1.0")
    parser.add_argument("--before-relay", action="store_true")
    args = parser.parse_args()
    if args.before_relay:
        from dspy_top import cli

        cli.build_parser().parse_args(["relay"])  # what `dspy-top relay` meets in a dspy-top without it
        return 0
    if args.relay_versions:
        relay_wire.RELAY_VERSIONS = args.relay_versions
        relay_wire.RELAY_VERSION = max(args.relay_versions)
    if args.protocol is not None:
        protocol.PROTOCOL_VERSION = args.protocol
    from dspy_top.relay.command import main as relay

    return relay([], args.dspy_top)


if __name__ == "__main__":
    sys.exit(main())
