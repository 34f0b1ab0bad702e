"""The `dspy-top` command: the live viewer, batch mode, and the `run` and `demo` subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
A live, top-style view of DSPy programs: LM calls, tokens, cost, cache, errors and
latency per module and per model, with a browsable history of every call.

With no option, dspy-top attaches to every instrumented DSPy process of this user and
keeps watching for new ones. A process is instrumented when it calls
dspy_top.instrument(), runs with DSPY_TOP=1, is started with `dspy-top run`, or was
attached with `dspy-top attach PID` while running.
"""

EPILOG = """\
subcommands:
  dspy-top run [--] COMMAND...   run COMMAND instrumented and watch it (dspy-top run --help)
  dspy-top demo                  run a small simulated DSPy job and watch it (dspy-top demo --help)
  dspy-top attach PID            instrument a running DSPy job started without dspy-top (dspy-top attach --help)
  dspy-top detach PID            remove what `dspy-top attach` put into it

keys (in the viewer; ? shows them all):
  q quit   space pause   / filter   < > sort column   enter expand / inspect
  t tree   f follow      p processes   m models   o optimizer   tab next pane   ? help
  k stop the focused job (asks first; its next LM call ends the run)

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
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dspy-top", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    target = parser.add_argument_group("what to attach to (default: every instrumented process, as they come)")
    target.add_argument("-p", "--pid", type=int, action="append", metavar="PID", dest="pids",
                        help="attach to this process only (repeat for several)")
    target.add_argument("--socket", type=Path, action="append", metavar="PATH", dest="sockets",
                        help="attach to the process serving this socket")
    target.add_argument("--attach", action="store_true",
                        help="with -p: first instrument those processes if they were started without dspy-top "
                             "(as `dspy-top attach PID` does)")
    view = parser.add_argument_group("display")
    view.add_argument("-d", "--delay", type=positive_number, default=1.0, metavar="SECONDS",
                      help="seconds between screen updates or batch snapshots (default 1)")
    view.add_argument("-b", "--batch", action="store_true",
                      help="print snapshots instead of running the interactive viewer")
    view.add_argument("-n", "--iterations", type=int, metavar="N",
                      help="batch mode: stop after N snapshots (default: until interrupted)")
    view.add_argument("--json", action="store_true",
                      help="batch mode: print one JSON object per snapshot (docs/batch-json.md)")
    money = parser.add_argument_group("prices and budget")
    money.add_argument("--price", type=price_option, action="append", metavar="MODEL=IN/OUT[/CACHED]", dest="prices",
                       help="price MODEL's calls at IN/OUT (and CACHED) USD per million tokens, replacing "
                            "the job's figure and pricing calls it could not (repeat for several models)")
    money.add_argument("--budget", type=positive_number, metavar="USD",
                       help="warn at 80%% and 100%% of USD spent across every attached job "
                            "(batch mode: on stderr, and exit status 3 once reached)")
    parser.add_argument("--version", action="version", version=f"dspy-top {_version()}")
    return parser


def _version() -> str:
    from dspy_top import __version__

    return __version__


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def price_option(text: str):
    from dspy_top.pricing import parse_price

    try:
        return parse_price(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _money(args: argparse.Namespace, parser: argparse.ArgumentParser) -> tuple[dict, float | None]:
    """Prices from the options, else the environment, else the config file; the budget from `--budget` only.

    The config file's `[budget]` and DSPY_TOP_BUDGET set each job's own guard, shown as the jobs report it.
    """
    from dspy_top import config

    try:
        file = config.load_file()
        prices = config.prices(dict(args.prices or ()), file)
    except (ValueError, TypeError, KeyError) as exc:
        parser.exit(2, f"dspy-top: bad configuration: {exc}\n")
    return prices, args.budget


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("run", "demo"):
        return _subcommand(argv[0], argv[1:])
    if argv and argv[0] in ("attach", "detach"):
        from dspy_top.attach import command

        return command.main(argv[1:], argv[0])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.attach:
        if not args.pids:
            parser.error("--attach needs -p PID")
        from dspy_top.attach.command import attach_command

        for pid in args.pids:
            status = attach_command(pid)
            if status:
                return status
    if args.iterations is not None and args.iterations < 1:
        parser.error("-n must be at least 1")
    if (args.json or args.iterations is not None) and not args.batch:
        parser.error("-n and --json need -b (batch mode)")
    if not args.batch and no_terminal():
        parser.exit(2, f"dspy-top: {no_terminal()}\n")
    prices, budget = _money(args, parser)
    from dspy_top import paths

    located = paths.locate()  # never raises: an unusable runtime directory gives a private fallback and a warning
    if args.batch:
        from dspy_top.viewer import batch

        if located.warning:
            batch.say(located.warning)
        return batch.run(pids=args.pids, sockets=args.sockets, iterations=args.iterations, delay=args.delay,
                         as_json=args.json, prices=prices, budget_usd=budget, directory=located.path)
    from dspy_top.viewer.app import run_viewer

    return run_viewer(pids=args.pids, sockets=args.sockets, delay=args.delay, prices=prices, budget_usd=budget,
                      directory=located.path, notice=located.warning)


def no_terminal() -> str | None:
    """Why the live view cannot start here (stdout is not a terminal: a file, a pipe), or None."""
    try:
        if sys.stdout is not None and sys.stdout.isatty():
            return None
    except (AttributeError, ValueError):  # replaced or closed stdout
        pass
    return "the live view needs a terminal (stdout is not one); use -b for text snapshots, or -b --json"


def _subcommand(name: str, argv: list[str]) -> int:
    import importlib

    try:
        module = importlib.import_module(f"dspy_top.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"dspy_top.{name}":
            raise
        print(f"dspy-top: the `{name}` subcommand is not available in this build", file=sys.stderr)
        return 2
    return int(module.main(argv) or 0)


if __name__ == "__main__":
    sys.exit(main())
