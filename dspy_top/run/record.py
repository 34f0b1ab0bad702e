"""`dspy-top run`'s recording: where the job's processes record, the run id that groups them, and
where the job's output is kept.

By default every Python process of the job records into the runs directory (its own file,
`<start time>-<pid>-<script>.dtop`), and the job's output is kept there too, as
`<run id>.log`, so `dspy-top runs` shows the run with its log. `--record FILE` names the job's
file (a second process writes `FILE-<pid>.dtop` beside it) and keeps the log as FILE with
`.log`; `--no-record` records nothing (the log then stays in the run's private work dir).
Nothing here imports dspy, and reading the recordings' headers imports only the recording package.
"""

from __future__ import annotations

import argparse
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dspy_top.recording import runs

_PYTHON = re.compile(r"^python[0-9.]*$")
_TAKES_VALUE = ("-W", "-X")


@dataclass(frozen=True)
class RunRecording:
    """Where one run records: the job's environment entries, and where to look for its files."""

    run_id: str
    record: str  # DSPY_TOP_RECORD for the job: "1" (the runs directory) or a file
    directory: Path  # where its recordings appear
    log: Path | None  # where its output is kept (None: --log chose, or the work dir)
    started_at: float

    def environment(self) -> dict[str, str]:
        return {"DSPY_TOP_RECORD": self.record, "DSPY_TOP_RUN_ID": self.run_id}

    def files(self) -> list[Path]:
        """The recordings this run's processes wrote (the first process first)."""
        from dspy_top.recording import Recording, RecordingError

        found = []
        for path in runs.recordings(self.directory):
            try:
                if path.stat().st_mtime < self.started_at - 1:
                    break  # newest first: the rest are older than the run
                with Recording(path) as recording:
                    if recording.hello.get("run_id") == self.run_id:
                        found.append((recording.started_at, path))
            except (OSError, RecordingError):
                continue
        return [path for _, path in sorted(found)]


def add_record_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("recording")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="record the job to FILE (a second process of the job writes FILE-<pid>.dtop beside "
        "it) and keep its output as FILE with .log (default: a new recording in the runs "
        "directory, `dspy-top runs` lists it)",
    )
    choice.add_argument("--no-record", action="store_true", help="do not record the job")


def new_run_id(command: list[str], started: float | None = None) -> str:
    """`<start time>-<dspy-top's pid>-<script>`: unique on this machine, and sorted by time."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    return f"{stamp}-{os.getpid()}-{runs.script_name(job_argv(command))}"


def plan(
    args: argparse.Namespace, command: list[str], env: dict[str, str], warn: Callable[[str], None]
) -> RunRecording | None:
    """How this run records, or None when it does not (`--no-record`, or the runs directory cannot
    be made: `warn` says why, and `env` tells the job) or when the environment already says
    where (DSPY_TOP_RECORD: the job does as it says). Raises ValueError with a message when it
    cannot record to the file `--record` names."""
    if getattr(args, "no_record", False):
        env["DSPY_TOP_RECORD"] = "0"
        return None
    started = time.time()
    run_id = runs.script_safe(env.get("DSPY_TOP_RUN_ID", ""))[:64] or new_run_id(command, started)
    env["DSPY_TOP_RUN_ID"] = run_id
    record_file: Path | None = getattr(args, "record", None)
    if record_file is None and env.get("DSPY_TOP_RECORD", "").strip():
        return None
    if record_file is not None:
        record_file = record_file.expanduser().absolute()
        if record_file.exists() or record_file.is_symlink():
            raise ValueError(f"{record_file} exists: choose another file for --record, or remove it")
        if not record_file.parent.is_dir():
            raise ValueError(f"cannot record to {record_file}: {record_file.parent} is not a directory")
        log = None if args.log is not None else record_file.with_suffix(runs.LOG_SUFFIX)
        return RunRecording(run_id, str(record_file), record_file.parent, log, started)
    try:
        directory = runs.runs_dir(create=True)
    except OSError as exc:  # the default only: the job runs, unrecorded, and the user is told
        warn(
            f"cannot record to the runs directory {runs.runs_dir()} ({exc.strerror or exc}); "
            "the job runs without a recording (--record FILE chooses another place)"
        )
        env["DSPY_TOP_RECORD"] = "0"
        return None
    log = None if args.log is not None else directory / f"{run_id}{runs.LOG_SUFFIX}"
    return RunRecording(run_id, "1", directory, log, started)


def job_argv(command: list[str]) -> list[str]:
    """What the job's Python process will have as `sys.argv` (its script, `-m` module or `-c`), or,
    for a console script or a wrapper, the command itself."""
    if not command or not _PYTHON.match(Path(command[0]).name):
        return list(command[:1])
    words = command[1:]
    index = 0
    while index < len(words):
        word = words[index]
        if word in ("-m", "-c"):
            return words[index:]
        if not word.startswith("-") or word == "-":
            return words[index:]
        index += 2 if word in _TAKES_VALUE else 1
    return []
