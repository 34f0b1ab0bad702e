"""The `dspy-top` command: the live viewer, batch mode, and the `run`, `demo`, `attach`, `detach`,
`runs` and `export` subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dspy_top import hosts, options

DESCRIPTION = """\
A live, top-style view of DSPy programs: LM calls, tokens, cost, cache, errors and
latency per module and per model, with a browsable history of every call.

With no option, dspy-top attaches to every instrumented DSPy process of this user and
keeps watching for new ones. A process is instrumented when it calls
dspy_top.instrument(), runs with DSPY_TOP=1, is started with `dspy-top run`, or was
attached with `dspy-top attach PID` while running. The live view also lists, dimmed, your
DSPy jobs started without dspy-top (found from /proc): `A` attaches the selected one.
"""

EPILOG = """\
subcommands:
  dspy-top run [--] COMMAND...   run COMMAND instrumented and watch it (dspy-top run --help)
  dspy-top demo                  run a small simulated DSPy job and watch it (dspy-top demo --help)
  dspy-top attach PID            instrument a running DSPy job started without dspy-top (dspy-top attach --help)
  dspy-top detach PID            remove what `dspy-top attach` put into it
  dspy-top runs                  the recorded runs, newest first (dspy-top runs --help)
  dspy-top export RECORDING      a recording's LM calls as JSON lines, CSV or inspect_history text
  dspy-top replay [RECORDING]    the viewer over a recording, at any moment of it (dspy-top replay --help)
  dspy-top serve --prometheus PORT | --otlp URL
                                 export every job to Prometheus / OpenTelemetry (dspy-top serve --help)
  dspy-top relay                 stream this machine's jobs over stdio, for --host (dspy-top relay --help)

other machines, over your own ssh (dspy-top must be installed there too):
  dspy-top --host gpu-box                  this machine's jobs and gpu-box's, each row with its host
  dspy-top --host alice@10.0.0.5,gpu-box --no-local -b -n 1 --json

keys (in the viewer; ? or F1 shows them all):
  q quit   space pause   / filter (also searches prompts and responses)   < > sort column
  enter expand / inspect   t tree   f follow   p processes   m models   o optimizer
  z zoom a pane   escape leave a mode   d refresh interval   tab next pane   ? help
  k stop a job (asks first; its next LM call ends the run)

batch mode:
  dspy-top -b -n 1 --json      one JSON snapshot (schema in docs/batch-json.md)
  dspy-top -b -d 5             a text snapshot every 5 seconds, like top -b

prices and budgets:
  --price openai/my-model=0.15/0.60   USD per million input/output[/cached] tokens
  --budget 5.00                       warn at 80% and 100% of $5.00 spent (all jobs)
  prices also come from the config file ([prices]) and DSPY_TOP_PRICES; a job's own
  budget (dspy_top.instrument(budget_usd=...)) shows in the header

exit status: 0 when a process was attached (batch mode) or the viewer quit normally,
1 when batch mode attached nothing, 2 on a usage error or when the live view has no
terminal (stdout is a file or a pipe: use -b), 3 when batch mode saw the --budget reached.

environment:
  DSPY_TOP_RUNTIME_DIR   where the sockets are (default: the per-user runtime dir; one another
                         user could have planted is replaced by a private one, with a warning)
  DSPY_TOP_CONFIG        the config file (default: <user config dir>/dspy-top/config.toml)
  DSPY_TOP_PRICES        MODEL=IN/OUT,MODEL=IN/OUT   DSPY_TOP_BUDGET   USD
  DSPY_TOP_RECORD        in a job: record it (1: into the runs directory; or a file or a directory)
  DSPY_TOP_SSH           the ssh command for --host, with options (like GIT_SSH_COMMAND; default ssh)
  DSPY_TOP_RELAY_COMMAND what --host runs on the host (default: dspy-top relay)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dspy-top",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_argument_group("what to attach to (default: every instrumented process, as they come)")
    target.add_argument(
        "-p",
        "--pid",
        type=int,
        action="append",
        metavar="PID",
        dest="pids",
        help="attach to this process only (repeat for several)",
    )
    target.add_argument(
        "--socket",
        type=Path,
        action="append",
        metavar="PATH",
        dest="sockets",
        help="attach to the process serving this socket",
    )
    target.add_argument(
        "--attach",
        action="store_true",
        help="with -p: first instrument those processes if they were started without dspy-top "
        "(as `dspy-top attach PID` does)",
    )
    hosts.add_host_options(parser.add_argument_group("other machines (over ssh)"))
    options.add_display_options(
        parser.add_argument_group("display"),
        batch_help="print snapshots instead of running the interactive viewer",
        iterations_help="batch mode: stop after N snapshots (default: until interrupted)",
    )
    money = parser.add_argument_group("prices and budget")
    options.add_price_option(
        money,
        help="price MODEL's calls at IN/OUT (and CACHED) USD per million tokens, "
        "replacing the job's figure and pricing calls it could not (repeat for "
        "several models)",
    )
    options.add_budget_option(
        money,
        help="warn at 80%% and 100%% of USD spent across every attached job "
        "(batch mode: on stderr, and exit status 3 once reached)",
    )
    parser.add_argument("--version", action="version", version=f"dspy-top {_version()}")
    return parser


def _version() -> str:
    from dspy_top import __version__

    return __version__


def _money(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[dict, float | None]:
    """Prices from the options, else the environment, else the config file; the budget from `--budget` only.

    The config file's `[budget]` and DSPY_TOP_BUDGET set each job's own guard, shown as the jobs report it.
    A bad price anywhere is a usage error (exit status 2) that says where it is.
    """
    from dspy_top import config

    prices, problems = config.viewer_prices(dict(args.prices or ()))
    if problems:
        parser.exit(2, "".join(f"dspy-top: bad setting: {problem}\n" for problem in problems))
    return prices, args.budget


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "run":
        from dspy_top.run import main as run_main

        return run_main(argv[1:])
    if argv and argv[0] == "demo":
        from dspy_top.demo import main as demo_main

        return demo_main(argv[1:])
    if argv and argv[0] == "export":
        from dspy_top.recording import command as recording_command

        return recording_command.export_main(argv[1:])
    if argv and argv[0] in ("runs", "replay"):  # `runs` on a terminal picks a run to replay
        from dspy_top.viewer.replay import command as replay_command

        return (replay_command.runs_main if argv[0] == "runs" else replay_command.main)(argv[1:])
    if argv and argv[0] == "serve":
        from dspy_top.serve.command import main as serve_main

        return serve_main(argv[1:])
    if argv and argv[0] in ("attach", "detach"):
        from dspy_top.attach import command

        return command.main(argv[1:], argv[0])
    if argv and argv[0] == "relay":
        from dspy_top.relay.command import main as relay_main

        return relay_main(argv[1:], _version())
    parser = build_parser()
    args = parser.parse_args(argv)
    options.check_display_options(parser, args)
    hosts.check_host_options(parser, args)
    if not args.batch and options.no_terminal():
        parser.exit(2, f"dspy-top: {options.no_terminal()}\n")
    if args.attach:
        if not args.pids:
            parser.error("--attach needs -p PID")
        from dspy_top.attach.command import attach_command

        for pid in args.pids:
            status = attach_command(pid)
            if status:
                return status
    prices, budget = _money(args, parser)
    from dspy_top import paths

    located = paths.locate()  # never raises: an unusable runtime directory gives a private fallback and a warning

    def sources() -> list:
        # Made when needed: the live view's first frame comes before the sources (and the model,
        # the protocol and msgpack they import) are loaded.
        from dspy_top.sources.local import local_sockets

        made = [] if args.no_local else [local_sockets(args.pids or (), args.sockets or (), located.path)]
        return made + hosts.ssh_sources(args)

    if args.batch:
        from dspy_top.viewer import batch

        if located.warning:
            batch.say(located.warning)
        return batch.run(
            sources(), iterations=args.iterations, delay=args.delay, as_json=args.json, prices=prices, budget_usd=budget
        )
    from dspy_top.viewer.app import run_viewer

    # Only this machine's sockets: made after the first frame, which says where they are. Other
    # machines' sources are made now, and say what they watch themselves.
    local_only = not hosts.hosts_of(args)
    # Watching every local socket: the process list also offers this user's DSPy jobs started without
    # dspy-top, and `A` attaches one (its socket then comes to this directory).
    discovering = not (args.no_local or args.pids or args.sockets)
    return run_viewer(
        sources if local_only else sources(),
        watching=str(located.path) if local_only else None,
        delay=args.delay,
        prices=prices,
        budget_usd=budget,
        notice=located.warning,
        history=args.history,
        offer_attach=located.path if discovering else None,
    )


if __name__ == "__main__":
    sys.exit(main())
