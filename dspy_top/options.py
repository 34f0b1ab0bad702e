"""The command-line options `dspy-top`, `dspy-top run` and `dspy-top demo` share, defined and checked once.

Each command puts them in its own groups and says in its own words what they mean for it
(the viewer's `--price` re-prices what it shows; `run`'s sets the job's prices). Standard
library only: `--help` must stay fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _positive(text: str, kind: type, what: str, zero: bool = False) -> Any:
    """`text` as a `kind` greater than 0 (or, `zero`, 0 or more), else a usage error that says why."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    if value < 0 or (value == 0 and not zero):
        raise argparse.ArgumentTypeError("must be 0 or more" if zero else "must be greater than 0")
    return value


def positive_number(text: str) -> float:
    return _positive(text, float, "a number")


def positive_int(text: str) -> int:
    return _positive(text, int, "a whole number")


def non_negative_number(text: str) -> float:
    return _positive(text, float, "a number", zero=True)


def price_option(text: str) -> Any:
    """`MODEL=IN/OUT[/CACHED]` as a (model, Price) pair."""
    from dspy_top.pricing import parse_price

    try:
        return parse_price(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_display_options(group: Any, *, batch_help: str, iterations_help: str) -> None:
    """-d, -b, -n and --json."""
    group.add_argument(
        "-d",
        "--delay",
        type=positive_number,
        default=1.0,
        metavar="SECONDS",
        help="seconds between screen updates or batch snapshots (default 1)",
    )
    group.add_argument("-b", "--batch", action="store_true", help=batch_help)
    group.add_argument("-n", "--iterations", type=int, metavar="N", help=iterations_help)
    group.add_argument(
        "--json", action="store_true", help="batch mode: print one JSON object per snapshot (docs/batch-json.md)"
    )
    group.add_argument(
        "--history",
        type=positive_int,
        default=10_000,
        metavar="CALLS",
        help="calls the live view holds for its history pane, newest kept (default 10000)",
    )


def check_display_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """-n and --json make sense only with -b; -n counts at least one snapshot."""
    if args.iterations is not None and args.iterations < 1:
        parser.error("-n must be at least 1")
    if (args.json or args.iterations is not None) and not args.batch:
        parser.error("-n and --json need -b (batch mode)")


def no_terminal() -> str | None:
    """Why the live view cannot start here (stdout is not a terminal: a file, a pipe), or None."""
    try:
        if sys.stdout is not None and sys.stdout.isatty():
            return None
    except (AttributeError, ValueError):  # replaced or closed stdout
        pass
    return "the live view needs a terminal (stdout is not one); use -b for text snapshots, or -b --json"


def add_price_option(group: Any, *, help: str) -> None:
    """--price MODEL=IN/OUT[/CACHED], repeatable, into `args.prices`."""
    group.add_argument(
        "--price", type=price_option, action="append", metavar="MODEL=IN/OUT[/CACHED]", dest="prices", help=help
    )


def add_budget_option(group: Any, *, help: str) -> None:
    """--budget USD."""
    group.add_argument("--budget", type=positive_number, metavar="USD", help=help)
