"""`dspy-top replay`: which recordings (a file, a directory, the latest run), then the viewer or batch mode.

Opening is quick whatever the size: each file's end and trials come from its footer (or its
last checkpoint), and the viewer starts from the checkpoint before the moment shown. Batch
mode (`-b`) never imports Textual.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dspy_top import options
from dspy_top.recording import runs
from dspy_top.recording.frames import RecordingError
from dspy_top.recording.reader import Recording
from dspy_top.sources.replay_clock import SPEEDS
from dspy_top.sources.replay_timeline import GOTO_HELP, Goto, parse_goto

USAGE = "dspy-top replay [RECORDING] [--at WHEN] [--speed X] [-d SECONDS] [-b [-n N] [--json]] [--dir DIR]"
DESCRIPTION = """\
Replay a recording in the viewer: every pane, key and filter of the live view, over the
processes as they were at any moment of the recording, with every call's prompt and
response read from the file. It opens on the whole run (the end, paused); a recording
still being written opens on its newest moment and follows it as it grows.

RECORDING is a .dtop file, a directory of them (the processes of one job, replayed
together; a copy of a process's file counts once), a run id (as `dspy-top runs --json`
shows it: all its processes), or `latest` (the default: the newest run in the runs
directory).
"""
EPILOG = f"""\
keys (besides the viewer's; ? shows them all):
  space play / pause      ] [ faster / slower (1x to 100x)      e the end
  . , step forward / back one message or LM call           0-9 go to 0%, 10%, ... 90%
  g go to: {GOTO_HELP}

--at and g take the same: 12:30 or 1:02:03 from the recording's start, 40%, trial 7
(the moment optimizer trial 7 ended: its score in), start, end.

batch mode (-b): the snapshots `dspy-top -b` would have printed, one every -d seconds of the
recording, ending with its end state (or the --at moment); -n N prints the last N only, so
`dspy-top replay latest -b -n 1 --json` is the run's final numbers. A recording still being
written is followed until its writer stops.

exit status: 0, 1 when no recording could be read (the message names the file and the
byte offset), 2 on a usage error.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dspy-top replay",
        usage=USAGE,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "recording",
        nargs="?",
        default="latest",
        metavar="RECORDING",
        help="a .dtop file, a directory of them, a run id, or latest (default)",
    )
    parser.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="where `latest` is looked for (default: the runs directory, <user state dir>/dspy-top/runs)",
    )
    where = parser.add_argument_group("where and how fast")
    where.add_argument("--at", metavar="WHEN", help="start there (default: the end); in batch mode, end there")
    where.add_argument(
        "--speed",
        type=_speed,
        metavar="X",
        help=f"start playing at X times the recorded pace ({SPEEDS[0]:g} to {SPEEDS[-1]:g}), from --at or the start",
    )
    options.add_display_options(
        parser.add_argument_group("display"),
        batch_help="print snapshots instead of running the interactive viewer",
        iterations_help="batch mode: print only the last N snapshots (-n 1: the end state)",
    )
    money = parser.add_argument_group("prices and budget")
    options.add_price_option(
        money, help="price MODEL's calls at IN/OUT (and CACHED) USD per million tokens (repeat for several models)"
    )
    options.add_budget_option(money, help="warn at 80%% and 100%% of USD spent")
    return parser


def _speed(text: str) -> float:
    value = options.positive_number(text.rstrip("xX×"))
    if not SPEEDS[0] <= value <= SPEEDS[-1]:
        raise argparse.ArgumentTypeError(f"from {SPEEDS[0]:g} to {SPEEDS[-1]:g}")
    return value


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    options.check_display_options(parser, args)
    if not args.batch and options.no_terminal():
        parser.exit(2, f"dspy-top: {options.no_terminal()}\n")
    goto: Goto | None = None
    if args.at is not None:
        try:
            goto = parse_goto(args.at)
        except ValueError as exc:
            parser.error(f"--at: {exc}")
    from dspy_top import config
    from dspy_top.viewer.batch import say

    prices, problems = config.viewer_prices(dict(args.prices or ()))
    if problems:
        parser.exit(2, "".join(f"dspy-top: bad setting: {problem}\n" for problem in problems))
    try:
        paths = recordings_named(args.recording, args.dir or runs.runs_dir())
    except LookupError as exc:
        say(str(exc))
        return 2
    recordings = []
    for path in paths:
        try:
            recordings.append(Recording(path))
        except RecordingError as exc:
            say(str(exc))
        except OSError as exc:
            say(f"{path}: cannot read it ({exc.strerror or exc})")
    if not recordings:
        return 1
    from dspy_top.sources.replay import RecordingSource

    source = RecordingSource(recordings)
    damage = [str(d) for track in source.tracks for d in track.recording.damage]
    start = None
    if goto is not None:
        try:
            start = source.moment(goto)
        except ValueError as exc:
            say(f"--at: {exc}")
            source.close()
            return 2
    if args.batch:
        from dspy_top.viewer.replay import batch

        for line in damage:
            say(line)
        return batch.run(
            source,
            iterations=args.iterations,
            delay=args.delay,
            as_json=args.json,
            end=start,
            prices=prices,
            budget_usd=args.budget,
        )
    if start is not None:
        source.seek(start)
    elif args.speed is not None:
        source.seek(source.timeline.start)
    elif source.live:
        source.to_end()  # a recording being written: its newest moment, followed
    if args.speed is not None:
        source.clock.set_speed(args.speed)
        source.clock.play()
    from dspy_top.viewer.replay.app import run_replay_viewer

    notice = "the recording is damaged; what could be read is shown:\n" + "\n".join(damage[:5]) if damage else None
    return run_replay_viewer(source, delay=args.delay, prices=prices, budget_usd=args.budget, notice=notice)


def runs_main(argv: list[str]) -> int:
    """`dspy-top runs`: on a terminal, the list of runs, where enter replays the one under the
    cursor (here, in this process) and q quits; else the table (recording/command.py)."""
    from dspy_top.recording import command as recording_command

    def choose(found, directory: Path) -> int:
        from dspy_top.viewer.replay.runs_list import choose_run

        chosen = choose_run(found, directory)
        if chosen is None:
            return 0
        return main([recording_command.replay_target(chosen), "--dir", str(directory)])

    return recording_command.runs_main(argv, choose=choose)


def recordings_named(name: str, directory: Path) -> list[Path]:
    """The recordings RECORDING names: a file; the recordings in a directory, one file a process;
    `latest`, the newest one in `directory` with the other processes of its run. LookupError says
    why there are none."""
    path = Path(name).expanduser()
    if path.is_dir():
        found = sorted(runs.recordings(path))
        if not found:
            raise LookupError(f"no recordings (*{runs.SUFFIX}) in {path}")
        return _one_file_each_process(found)
    if path.exists() or name != "latest":
        if not path.exists():
            of_run = _run_named(name, directory)
            if of_run:
                return of_run
            raise LookupError(
                f"{path}: no such file (RECORDING is a {runs.SUFFIX} file, a directory of them, "
                "a run id as `dspy-top runs --json` shows it, or latest)"
            )
        return [path]
    found = runs.recordings(directory)
    if not found:
        raise LookupError(f"no recordings in {directory} (`dspy-top run` and `dspy-top demo` record there)")
    return _run_of(found[0], found)


def _run_named(run_id: str, directory: Path) -> list[Path]:
    """The recordings of the run `run_id` in `directory` (the processes of one job), if any."""
    if not run_id or run_id.endswith(runs.SUFFIX) or "/" in run_id:
        return []
    from dspy_top.recording.summary import group_runs, list_runs

    summaries, _ = list_runs(directory)
    for run in group_runs(summaries, directory):
        if run.run_id == run_id:
            return sorted(r.path for r in run.recordings)
    return []


def _run_of(newest: Path, candidates: list[Path]) -> list[Path]:
    """`newest` and the other recordings whose hello names the same run (the processes of one job),
    one file a process."""
    run_id = _run_id(newest)
    if run_id is None:
        return [newest]
    return _one_file_each_process([path for path in candidates if path == newest or _run_id(path) == run_id])


def _one_file_each_process(paths: list[Path]) -> list[Path]:
    """These recordings, one file a process (summary.one_file_a_process: a copy of a process's file,
    the same pid and start, is not replayed again; the fullest is), sorted. A file that cannot be
    summarized is kept: the replay says what is wrong with it."""
    from dspy_top.recording.summary import one_file_a_process, summarize

    summaries, unread = [], []
    for path in paths:
        try:
            summaries.append(summarize(path))
        except (RecordingError, OSError):
            unread.append(path)
    kept, _ = one_file_a_process(summaries)
    return sorted([*(summary.path for summary in kept), *unread])


def _run_id(path: Path) -> str | None:
    try:
        with Recording(path) as recording:
            run_id = recording.hello.get("run_id")
    except (RecordingError, OSError):
        return None
    return run_id if isinstance(run_id, str) and run_id else None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
