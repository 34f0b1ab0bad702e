"""The `dspy-top run` command: its options (shared with `dspy-top demo`), the environment they give the job, main.

Nothing here imports dspy or litellm, and batch mode does not import Textual.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from dspy_top import options
from dspy_top.budget_levels import ON_EXCEED
from dspy_top.run import record
from dspy_top.run.start import StartError, start_job
from dspy_top.run.watch import watch_batch, watch_interactive

USAGE = (
    "dspy-top run [-d SECONDS] [-b [-n N] [--json]] [--log FILE] [--record FILE | --no-record]\n"
    "                    [--budget USD [--on-exceed warn|raise|stop]] [--price MODEL=IN/OUT[/CACHED]]\n"
    "                    [--] COMMAND [ARG...]"
)
DESCRIPTION = """\
Run COMMAND with DSPy instrumentation (no code change) and show the live view in this
terminal. Works for `python job.py`, `python -m pkg`, console scripts and shell
wrappers: every Python process of the job that imports dspy is attached.

The job's stdout and stderr go to a log pane and to a log file (its path is on screen).
When the job ends the view stays, with the final numbers and the exit status, until q.
ctrl+c once sends SIGINT to the job; twice quits (and stops the job).

The job is recorded (every call with its prompt and response, the optimizer's trials,
the final numbers) into the runs directory, with its output beside it: `dspy-top runs`
lists the recordings, `dspy-top export` writes their calls out.
"""
EPILOG = """\
examples:
  dspy-top run -- python job.py --epochs 3
  dspy-top run -- python -m mypkg.optimize
  dspy-top run -b -d 5 -- ./run_eval.sh      # a text snapshot every 5 s, then the job's status
  dspy-top run --budget 5 --on-exceed stop -- python optimize.py   # end the run once $5 is spent

recording: each Python process of the job writes its own file, <start time>-<pid>-<script>.dtop,
in <user state dir>/dspy-top/runs (DSPY_TOP_STATE_DIR moves it; the newest 5 GiB are kept,
see [recording] in the config file), and the job's output is kept there as <run id>.log.
A job killed outright leaves a recording that reads up to its last half second.

exit status: the job's (128+N when a signal N ended it), 127 when COMMAND is not found,
126 when it cannot be run, 2 on a usage error (a bad setting in the environment or the
config file the job would get included: it is named, and the job is not started).

The job's environment gets DSPY_TOP=1, PYTHONUNBUFFERED=1 (so its output shows up live),
DSPY_TOP_RUNTIME_DIR, DSPY_TOP_BUDGET, DSPY_TOP_ON_EXCEED and DSPY_TOP_PRICES from
--budget, --on-exceed and --price, DSPY_TOP_RECORD and DSPY_TOP_RUN_ID (the run's id, shared
by its processes), and a PYTHONPATH entry holding a sitecustomize.py that
loads the instrumentation where dspy-top's .pth file is not installed (it runs any other
sitecustomize too). The job's stdin is /dev/null, and it starts with SIGINT's default
action even if dspy-top's is ignored, so the ctrl+c dspy-top forwards reaches it.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dspy-top run",
        usage=USAGE,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_job_options(parser)
    return parser


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """How to watch the job, and its budget and prices: the options `dspy-top run` and `dspy-top demo` share."""
    display = parser.add_argument_group("display")
    options.add_display_options(
        display,
        batch_help="print snapshots instead of the live view; exit with the job's status",
        iterations_help="batch mode: at most N snapshots while the job runs (the final one always prints)",
    )
    display.add_argument(
        "--log",
        type=Path,
        metavar="FILE",
        help="write the job's output to FILE (default: a new private file, shown on screen)",
    )
    # The job's own budget guard and prices: they act in the job, exactly, on every call.
    money: Any = parser.add_argument_group("the job's budget and prices")
    options.add_budget_option(
        money, help="the job's spending limit: a warning at 80%% and 100%%, then what --on-exceed says"
    )
    money.add_argument(
        "--on-exceed",
        choices=ON_EXCEED,
        help="once the budget is spent: warn and carry on (default), raise BudgetExceeded "
        "at the next LM call, or stop the run there (exit status 1, with the reason)",
    )
    options.add_price_option(
        money,
        help="price MODEL's calls at IN/OUT (and CACHED) USD per million tokens in the job (repeat for several models)",
    )
    record.add_record_options(parser)


def money_environment(args: argparse.Namespace, base: dict[str, str]) -> dict[str, str]:
    """The job's environment entries for --budget, --on-exceed and --price (given prices win)."""
    env: dict[str, str] = {}
    if args.budget is not None:
        env["DSPY_TOP_BUDGET"] = repr(args.budget)
    if args.on_exceed:
        env["DSPY_TOP_ON_EXCEED"] = args.on_exceed
    if args.prices:
        given = [
            f"{model}={price.input!r}/{price.output!r}" + (f"/{price.cached!r}" if price.cached is not None else "")
            for model, price in args.prices
        ]
        env["DSPY_TOP_PRICES"] = ",".join(filter(None, [base.get("DSPY_TOP_PRICES", ""), *given]))
    return env


def split_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """(dspy-top's options, the command): split at the first `--`, else at the first non-option."""
    if "--" in argv:
        at = argv.index("--")
        return argv[:at], argv[at + 1 :]
    takes_value = {"-d", "--delay", "-n", "--iterations", "--log", "--budget", "--on-exceed", "--price", "--record"}
    index = 0
    while index < len(argv):
        word = argv[index]
        if not word.startswith("-") or word == "-":
            break
        index += 2 if word in takes_value else 1
    return argv[:index], argv[index:]


def refuse_bad_settings(prog: str, args: argparse.Namespace, env: dict[str, str]) -> bool:
    """Whether the settings the job would get (its environment, the config file) are bad; says what if so.

    The job itself would warn and go on without them; better to say so before starting it."""
    import sys

    from dspy_top import config

    _, problems = config.job_settings(environ={**env, **money_environment(args, env)})
    for problem in problems:
        print(f"{prog}: bad setting: {problem}", file=sys.stderr)
    return bool(problems)


def run_command(command: list[str], args: argparse.Namespace, env: dict[str, str] | None = None) -> int:
    """Start `command` and watch it as `args` (the view options) say; the job's exit status."""
    from dspy_top.viewer.batch import say
    from dspy_top.viewer.terminal import for_stream, inert

    if not args.batch and options.no_terminal():
        say(options.no_terminal())
        return 2
    env = dict(os.environ if env is None else env)
    env.update(money_environment(args, env))
    try:
        recording = record.plan(args, command, env, say)
    except ValueError as exc:
        say(str(exc))
        return 2
    if recording is not None:
        env.update(recording.environment())
    try:
        job = start_job(command, log_path=args.log or (recording.log if recording else None), env=env)
    except StartError as exc:
        say(str(exc))
        return exc.status
    except OSError as exc:
        say(f"cannot start the job: {exc}")
        return 1
    if recording is not None:
        job.recorded_to = str(recording.directory if recording.record == "1" else recording.record)
    code = None
    try:
        if args.batch:
            code = watch_batch(job, args.delay, args.iterations, args.json)
        else:
            if job.notice:
                say(job.notice)
            code = watch_interactive(job, args.delay, history=args.history)
        return code
    finally:
        if job.returncode() is None:
            job.stop()
        tail = job.tail() if args.batch and code not in (None, 0) else ""  # read before the log goes
        kept = job.close()
        if code is not None:
            where = (
                f"its output is in {kept}"
                if kept is not None
                else "its log was removed with the run (--log FILE keeps one)"
            )
            say(f"the job exited with status {code}; {where}")
            if recording is not None and not args.batch:
                say(_recorded(recording))
        if tail:  # the job's own output, made inert: it reaches the user's terminal
            print(
                for_stream(f"dspy-top: the end of its output:\n{inert(tail, multiline=True)}", sys.stderr),
                file=sys.stderr,
            )


def _recorded(recording: record.RunRecording) -> str:
    files = recording.files()
    if not files:
        return "nothing was recorded (no process of the job imported dspy)"
    more = f" and {len(files) - 1} more of its processes beside it" if len(files) > 1 else ""
    return f"recorded in {files[0]}{more} (dspy-top runs lists it)"


def main(argv: list[str]) -> int:
    given, command = split_command(list(argv))
    parser = build_parser()
    args = parser.parse_args(given)
    options.check_display_options(parser, args)
    if not command:
        parser.error("no command given: dspy-top run [options] -- COMMAND [ARG...]")
    if refuse_bad_settings("dspy-top run", args, dict(os.environ)):
        return 2
    return run_command(command, args)
