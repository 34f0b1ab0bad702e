"""`--host`, `--no-local`, `--ssh` and `--relay-command`: the options that reach other machines over SSH.

Defined and checked here, turned into sources (`sources/ssh.py`) only when used. Standard
library only at import: `--help` must stay fast.
"""

from __future__ import annotations

import argparse
import os
import shlex
from collections.abc import Mapping
from typing import Any

RELAY_COMMAND = "dspy-top relay"  # as sources/ssh.py runs it by default


def host_list(text: str) -> list[str]:
    """`a,b` as ["a", "b"]: each `[USER@]HOST` (or an alias of the ssh config), never an option."""
    hosts = [part.strip() for part in text.split(",")]
    for host in hosts:
        if not host:
            raise argparse.ArgumentTypeError(f"empty host name in {text!r}")
        if host.startswith("-") or any(c.isspace() or not c.isprintable() for c in host):
            raise argparse.ArgumentTypeError(f"not a host name: {host!r}")
    return hosts


def add_host_options(group: Any) -> None:
    group.add_argument(
        "--host",
        type=host_list,
        action="append",
        metavar="[USER@]HOST[,...]",
        dest="hosts",
        help="also show the jobs of HOST, through `ssh HOST dspy-top relay` (your ssh, its config "
        "and keys; dspy-top must be installed there); repeat or separate with commas",
    )
    group.add_argument(
        "--no-local", action="store_true", help="with --host: show only those hosts' jobs, not this machine's"
    )
    group.add_argument(
        "--ssh", metavar="COMMAND", help="the ssh command to run, with any options (default: $DSPY_TOP_SSH, else `ssh`)"
    )
    group.add_argument(
        "--relay-command",
        metavar="COMMAND",
        help="what ssh runs on each host (default: $DSPY_TOP_RELAY_COMMAND, else "
        f"`{RELAY_COMMAND}`), e.g. '~/venv/bin/dspy-top relay'",
    )


def hosts_of(args: argparse.Namespace) -> list[str]:
    """Every `--host` given, in order, each once."""
    return list(dict.fromkeys(host for group in (args.hosts or ()) for host in group))


def check_host_options(
    parser: argparse.ArgumentParser, args: argparse.Namespace, environ: Mapping[str, str] = os.environ
) -> None:
    """The options that only make sense with --host; an ssh command that can be split."""
    if not args.hosts:
        for option, value in (
            ("--no-local", args.no_local),
            ("--ssh", args.ssh),
            ("--relay-command", args.relay_command),
        ):
            if value:
                parser.error(f"{option} needs --host")
        return
    if args.no_local and (args.pids or args.sockets):
        parser.error("-p and --socket name this machine's processes: they cannot go with --no-local")
    try:
        if not ssh_command(args, environ):
            parser.error("--ssh (or DSPY_TOP_SSH) is empty")
    except ValueError as exc:
        parser.error(f"cannot read the ssh command: {exc}")


def ssh_command(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> list[str]:
    return shlex.split(args.ssh or environ.get("DSPY_TOP_SSH") or "ssh")


def ssh_sources(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> list:
    """One `SshSource` per `--host`."""
    from dspy_top import __version__
    from dspy_top.sources.ssh import SshSource

    ssh = ssh_command(args, environ)
    relay = args.relay_command or environ.get("DSPY_TOP_RELAY_COMMAND") or RELAY_COMMAND
    return [SshSource(host, version=__version__, ssh=ssh, relay_command=relay) for host in hosts_of(args)]
