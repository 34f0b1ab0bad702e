"""`dspy-top runs` (the recordings, newest first) and `dspy-top export` (a recording's calls written out).

Neither imports dspy, litellm or Textual. What a job wrote (its command, module names, error
messages, prompts) reaches a terminal only made inert (viewer/terminal.py); a file or a pipe
gets it as it is.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from dspy_top.recording import export, runs
from dspy_top.recording.frames import RecordingError
from dspy_top.recording.reader import Recording
from dspy_top.recording.summary import RunSummary, group_runs, list_runs
from dspy_top.viewer.terminal import can_encode, for_stream, inert

RUNS_DESCRIPTION = """\
The recorded runs, newest first: when each started, how long it ran, its processes (each
Python process of a job records its own file), LM calls, cost, the best optimizer score,
the size on disk and the command. On a terminal they are a list: enter replays the run
under the cursor (dspy-top replay), q quits; piped or redirected (or with --plain, --json)
they are printed. `dspy-top run` and `dspy-top demo` record by default; any job records
with DSPY_TOP_RECORD=1 or dspy_top.instrument(record=True).
"""
RUNS_EPILOG = """\
state: complete (the process closed its file), live (still being written), cut off (the
process was killed, or the disk filled: the file reads up to its last half second), damaged.
Unknown numbers show as ?, never as 0. A copy of a process's file (the same pid and start)
counts once: --json lists it under the run's copies.

examples:
  dspy-top runs                      # the runs directory (<user state dir>/dspy-top/runs)
  dspy-top runs --json               # one JSON object: {directory, runs: [...], unreadable: [...]}
  dspy-top export latest --format csv > calls.csv
"""
EXPORT_DESCRIPTION = """\
Write out the LM calls of a recording: one JSON object per call (jsonl, the default), the
same columns as CSV, or the last calls as DSPy's inspect_history prints them (inspect).
RECORDING is a .dtop file, `latest` (the newest run in the runs directory, all its
processes) or a run id as `dspy-top runs --json` shows it.
"""
EXPORT_EPILOG = (
    textwrap.fill(f"columns (jsonl keys, csv header): {', '.join(export.COLUMNS)};", 90)
    + """
with --payloads also messages and response (the call's outputs). time is local ISO 8601,
start is epoch seconds; eval, trial and compile say which evaluation, optimizer trial and
optimizer run the call was made in. The columns are in docs/recording-format.md.

The rows add up to the process's own totals; when they cannot (calls not stored: past the
recording's cap, or recorded from the middle of a run), export says so on stderr.

exit status: 0, 1 when a recording cannot be read (what was read before the damage is written),
2 on a usage error.
"""
)


def runs_main(argv: list[str], choose: Callable[[list[RunSummary], Path], int] | None = None) -> int:
    """`dspy-top runs`; on a terminal, with `choose` (the viewer's list, which replays the run picked:
    this package never imports the viewer), the runs go to it instead of the table."""
    parser = argparse.ArgumentParser(
        prog="dspy-top runs",
        description=RUNS_DESCRIPTION,
        epilog=RUNS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    parser.add_argument("--dir", type=Path, metavar="DIR", help="list the recordings in DIR instead")
    parser.add_argument("-n", type=int, metavar="N", dest="limit", help="only the newest N runs")
    parser.add_argument(
        "--plain",
        action="store_true",
        help="print the table even on a terminal (instead of the list to pick a run from)",
    )
    args = parser.parse_args(argv)
    directory = args.dir or runs.runs_dir()
    summaries, errors = list_runs(directory)
    found = group_runs(summaries, directory)[: args.limit] if args.limit else group_runs(summaries, directory)
    out = sys.stdout
    if args.json:
        out.write(
            json.dumps(
                {
                    "directory": str(directory),
                    "runs": [run.to_json() for run in found],
                    "unreadable": [{"path": str(e.path), "offset": e.offset, "reason": e.reason} for e in errors],
                }
            )
            + "\n"
        )
        return 0
    for error in errors:
        say(str(error))
    if not found:
        out.write(for_stream(inert(f"no recordings in {directory}"), out) + "\n")
        return 0
    if choose is not None and not args.plain and _interactive(out):
        return choose(found, directory)  # on a terminal: the list to pick a run from
    width = shutil.get_terminal_size().columns if out.isatty() else None
    out.write(for_stream(_table(found, directory, width), out))
    return 0


def _interactive(out: TextIO) -> bool:
    try:
        return out.isatty() and sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):  # replaced or closed streams
        return False


def replay_target(run: RunSummary) -> str:
    """What `dspy-top replay` is given to replay `run`: its id (all its processes), else its one file."""
    return run.run_id or str(run.first.path)


TABLE_HEADER = ("START", "DURATION", "PROCS", "CALLS", "COST", "BEST", "SIZE", "STATE", "COMMAND")
RIGHT_ALIGNED = (1, 2, 3, 4, 5, 6)  # the numbers' columns


def table_row(run: RunSummary) -> tuple[str, ...]:
    """One run's cells, as the table and the interactive list show them (the command made inert)."""
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started_at)),
        _duration(run.duration),
        str(run.processes),
        "?" if run.calls is None else f"{run.calls:,}",
        "?" if run.cost_usd is None else _dollars(run.cost_usd),
        "-" if run.best_score is None else f"{run.best_score:.1f}",
        _size(run.size),
        run.state,
        inert(run.command),
    )


def _table(found: list[RunSummary], directory: Path, width: int | None) -> str:
    """The runs as a table; on a terminal (`width`), each line cut to fit it."""
    header = TABLE_HEADER
    rows = [header] + [table_row(run) for run in found]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = [f"recordings in {inert(str(directory))}, newest first"]
    for row in rows:
        cells = [cell.rjust(w) if i in RIGHT_ALIGNED else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        line = "  ".join(cells) + "  " + row[-1]
        lines.append(line[: max(width, 80)] if width else line)
    return "\n".join(lines) + "\n"


def export_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="dspy-top export",
        description=EXPORT_DESCRIPTION,
        epilog=EXPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("recording", metavar="RECORDING", help="a .dtop file, latest, or a run id")
    parser.add_argument(
        "--format",
        choices=("jsonl", "csv", "inspect"),
        default="jsonl",
        help="jsonl (default), csv, or inspect (DSPy's inspect_history text)",
    )
    parser.add_argument("--payloads", action="store_true", help="jsonl and csv: add each call's messages and response")
    parser.add_argument(
        "-n", type=int, metavar="N", dest="last", default=1, help="inspect: the last N calls (default 1)"
    )
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="write to FILE instead of stdout")
    parser.add_argument(
        "--dir",
        type=Path,
        metavar="DIR",
        help="where `latest` and run ids are looked for (default: the runs directory)",
    )
    args = parser.parse_args(argv)
    if args.last < 1:
        parser.error("-n must be at least 1")
    try:
        paths = resolve(args.recording, args.dir or runs.runs_dir())
    except LookupError as exc:
        say(str(exc))
        return 2
    out: TextIO = sys.stdout
    handle = None
    if args.output is not None:
        try:
            handle = out = open(args.output, "w", encoding="utf-8", newline="")
        except OSError as exc:
            say(f"cannot write {args.output}: {exc.strerror or exc}")
            return 2
    terminal = handle is None and out.isatty()
    clean: Callable[[str], str] = str
    if terminal:
        clean = lambda text: for_stream(inert(text, multiline=True), out)  # noqa: E731
    elif handle is None and not can_encode(out, ANY_TEXT):  # LANG=C, an old tool on a pipe
        clean = export.ascii_json if args.format == "jsonl" else (lambda text: for_stream(text, out))
    try:
        return _export(paths, args, out, clean, terminal)
    except BrokenPipeError:  # `| head`: the reader had enough
        try:
            sys.stdout = None  # nothing more to flush into the closed pipe at exit
        except Exception:
            pass
        return 0
    finally:
        if handle is not None:
            handle.close()


def resolve(name: str, directory: Path) -> list[Path]:
    """The files a RECORDING argument names: a file; `latest`, the newest run's; or a run id's."""
    path = Path(name).expanduser()
    if path.is_file() or name.endswith(runs.SUFFIX):
        if not path.exists():
            raise LookupError(f"{path}: no such file")
        return [path]
    summaries, _ = list_runs(directory)
    found = group_runs(summaries, directory)
    if name == "latest":
        if not found:
            raise LookupError(f"no recordings in {directory}")
        return [r.path for r in found[0].recordings]
    for run in found:
        if run.run_id == name:
            return [r.path for r in run.recordings]
    raise LookupError(f"{name}: neither a recording file nor a run id in {directory} (dspy-top runs lists them)")


def _export(
    paths: list[Path], args: argparse.Namespace, out: TextIO, clean: Callable[[str], str], terminal: bool
) -> int:
    status = 0
    writer: Any = None
    inspected: list[tuple[float, dict[str, Any], Path]] = []
    for path in paths:
        try:
            recording = Recording(path)
        except RecordingError as exc:
            say(str(exc))
            status = 1
            continue
        except OSError as exc:
            say(f"{path}: cannot read it ({exc.strerror or exc})")
            status = 1
            continue
        with recording:
            rows = export.CallRows(recording, export.trial_numbers(recording))
            if args.format == "inspect":
                for call in export.last_calls(rows, args.last):
                    inspected.append((_ended(call), call, path))
            else:
                if writer is None:
                    payloads = _payloads(recording) if args.payloads else None
                    target = out if clean is str else _Cleaned(out, clean)
                    writer = (export.Csv if args.format == "csv" else export.JsonLines)(target, payloads)
                elif args.payloads:
                    writer.payloads = _payloads(recording)
                totals = export.Totals()
                for columns in rows.batches():
                    writer.write(columns)
                    totals.add(columns)
                _check(path, recording, totals)
            for damage in recording.damage:
                say(str(damage))
                status = 1
    if args.format == "inspect":
        inspected.sort(key=lambda item: item[0])
        colors = terminal
        for _, call, path in inspected[-args.last :]:
            with Recording(path) as recording:
                payload = recording.payload(call["call_id"]) if isinstance(call.get("call_id"), int) else None
            out.write(export.inspect_text(call, payload, colors=colors, clean=clean))
        out.write("\n\n\n\n")
    out.flush()
    return status


# Characters only a Unicode encoding holds: a stream that cannot take them gets ASCII (or JSON) escapes.
ANY_TEXT = "\u202e\U0001f600"


def _payloads(recording: Recording) -> Callable[[int], dict[str, Any] | None]:
    def payload(call_id: Any) -> dict[str, Any] | None:
        return recording.payload(call_id) if isinstance(call_id, int) else None

    return payload


def _check(path: Path, recording: Recording, totals: export.Totals) -> None:
    """Say when the rows do not add up to the process's own totals, and why they may not."""
    end = recording.end_state()
    known = end.totals
    if known is None:
        return
    differences = totals.matches(known)
    if not differences:
        return
    reasons = []
    if end.state.calls_dropped:
        reasons.append(f"{end.state.calls_dropped:,} calls were not stored past the recording's size cap")
    dropped = (end.stats or {}).get("dropped_events")
    if dropped:
        reasons.append(f"the process dropped {dropped:,} events from its queue")
    say(
        f"{path}: the exported calls do not add up to the process's totals ({'; '.join(differences)})"
        + (f": {'; '.join(reasons)}" if reasons else ": the recording began after the process's first calls")
    )


def _ended(call: dict[str, Any]) -> float:
    start, latency = call.get("start"), call.get("latency_s")
    return (start if isinstance(start, (int, float)) else 0.0) + (latency if isinstance(latency, (int, float)) else 0.0)


class _Cleaned:
    """A terminal, or a stream that cannot take Unicode: what is written is made inert or fitted first."""

    def __init__(self, out: TextIO, clean: Callable[[str], str]) -> None:
        self.out = out
        self.clean = clean

    def write(self, text: str) -> int:
        return self.out.write(self.clean(text))


def say(text: str) -> None:
    stream = sys.stderr
    print(for_stream(f"dspy-top: {inert(text)}", stream), file=stream, flush=True)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _dollars(value: float) -> str:
    if value == 0:
        return "$0"
    if value < 0.01:
        return f"${value:.6f}".rstrip("0")
    return f"${value:,.2f}"


def _size(count: int) -> str:
    for unit in ("B", "K", "M", "G"):
        if count < 1024 or unit == "G":
            return f"{count}{unit}" if unit == "B" else f"{count:.1f}{unit}"
        count /= 1024
    return str(count)
