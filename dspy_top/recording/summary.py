"""One line per recording, and per run, for `dspy-top runs`: start, duration, command, processes,
calls, cost, best score, size.

Read from each file's end state (its footer, or its last checkpoint and what follows), so
listing a directory of large recordings reads little of each. The processes of one job (a
wrapper's children, forks) each write their own file; their hellos share a `run_id`, and
`group_runs` puts them together, each process once: a copy of a process's file (the same pid and
start; a backup, or a copy taken while it was written) is listed as a copy, never counted again.
Imports the model (pure), never dspy or Textual.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dspy_top.recording.checked import finite
from dspy_top.recording.end_state import EndState
from dspy_top.recording.frames import RecordingError
from dspy_top.recording.reader import Recording
from dspy_top.recording.runs import LOG_SUFFIX, recordings


@dataclass(frozen=True)
class RecordingSummary:
    """What `dspy-top runs` shows of one recording. None is unknown (never 0)."""

    path: Path
    size: int
    started_at: float
    duration: float
    command: str
    pid: int | None
    ppid: int | None
    processes: int  # processes this file records: one (each process of a job writes its own file)
    calls: int | None  # exact LM calls, from the process's own counters
    cost_usd: float | None
    best_score: float | None  # the best optimizer score, when an optimizer ran
    state: str  # "complete", "live" (still written), "cut off" (its writer died, or the file is damaged)
    payloads: int
    payloads_dropped: int
    damage: tuple[str, ...]
    run_id: str | None = None  # shared by the processes of one job

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "size": self.size,
            "started_at": self.started_at,
            "duration_s": self.duration,
            "command": self.command,
            "pid": self.pid,
            "ppid": self.ppid,
            "processes": self.processes,
            "calls": self.calls,
            "cost_usd": self.cost_usd,
            "best_score": self.best_score,
            "state": self.state,
            "payloads": self.payloads,
            "payloads_dropped": self.payloads_dropped,
            "damage": list(self.damage),
            "run_id": self.run_id,
        }

    @property
    def ended_at(self) -> float:
        return self.started_at + self.duration


@dataclass(frozen=True)
class RunSummary:
    """One job: the recordings its processes wrote (one each), summed. None is unknown (never 0)."""

    run_id: str | None
    recordings: tuple[RecordingSummary, ...]  # one file a process, the first process first
    log: Path | None  # the job's output, kept with its recordings by `dspy-top run`
    # Other files recording a process of `recordings` (same pid and start), not counted: the fullest
    # copy of each process is the one in `recordings`.
    copies: tuple[RecordingSummary, ...] = ()

    @property
    def first(self) -> RecordingSummary:
        return self.recordings[0]

    @property
    def started_at(self) -> float:
        return min(r.started_at for r in self.recordings)

    @property
    def duration(self) -> float:
        return max(r.ended_at for r in self.recordings) - self.started_at

    @property
    def command(self) -> str:
        return self.first.command

    @property
    def processes(self) -> int:
        return len(self.recordings)

    @property
    def calls(self) -> int | None:
        return _sum(r.calls for r in self.recordings)

    @property
    def cost_usd(self) -> float | None:
        return _sum(r.cost_usd for r in self.recordings)

    @property
    def best_score(self) -> float | None:
        scores = [r.best_score for r in self.recordings if r.best_score is not None]
        return max(scores) if scores else None

    @property
    def size(self) -> int:
        return sum(r.size for r in self.recordings) + (_size(self.log) if self.log is not None else 0)

    @property
    def state(self) -> str:
        """`live` while any process still writes, `cut off` or `damaged` if any file is, else `complete`."""
        states = {r.state for r in self.recordings}
        for state in ("live", "cut off", "damaged"):
            if state in states:
                return state
        return "complete"

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at,
            "duration_s": self.duration,
            "command": self.command,
            "processes": self.processes,
            "calls": self.calls,
            "cost_usd": self.cost_usd,
            "best_score": self.best_score,
            "size": self.size,
            "state": self.state,
            "log": str(self.log) if self.log is not None else None,
            "recordings": [r.to_json() for r in self.recordings],
            "copies": [str(r.path) for r in self.copies],
        }


def group_runs(summaries: Iterable[RecordingSummary], directory: Path | None = None) -> list[RunSummary]:
    """Recordings grouped by run (their hellos' `run_id`; a file without one is a run of its own),
    newest first; within a run the first process first. `directory` is where logs are looked for."""
    groups: dict[Any, list[RecordingSummary]] = {}
    for summary in summaries:
        key = summary.run_id if summary.run_id else ("file", str(summary.path))
        groups.setdefault(key, []).append(summary)
    found = []
    for key, members in groups.items():
        members, copies = one_file_a_process(members)
        members.sort(key=lambda r: (_is_child(r, members), r.started_at))
        run_id = key if isinstance(key, str) else None
        found.append(RunSummary(run_id, tuple(members), _log_of(run_id, members[0].path, directory), copies))
    found.sort(key=lambda run: run.started_at, reverse=True)
    return found


def one_file_a_process(members: list[RecordingSummary]) -> tuple[list[RecordingSummary], tuple[RecordingSummary, ...]]:
    """Recordings (a run's, or a directory's for `dspy-top replay DIR`), one file a process (its pid
    and start), and the other copies. The one kept is the fullest: the most calls (a copy taken while
    the file was written holds fewer), then the latest end, the largest, the first path."""
    by_process: dict[Any, list[RecordingSummary]] = {}
    for summary in members:
        key = (summary.pid, summary.started_at) if summary.pid is not None else ("file", str(summary.path))
        by_process.setdefault(key, []).append(summary)
    kept: list[RecordingSummary] = []
    copies: list[RecordingSummary] = []
    for files in by_process.values():
        files.sort(key=lambda r: (-(r.calls if r.calls is not None else -1), -r.ended_at, -r.size, str(r.path)))
        kept.append(files[0])
        copies.extend(files[1:])
    copies.sort(key=lambda r: str(r.path))
    return kept, tuple(copies)


def _is_child(summary: RecordingSummary, members: list[RecordingSummary]) -> bool:
    return summary.ppid is not None and any(other.pid == summary.ppid for other in members if other is not summary)


def _log_of(run_id: str | None, first: Path, directory: Path | None) -> Path | None:
    """`dspy-top run` keeps the job's output as `<run id>.log` in the runs directory, or beside a
    `--record FILE` as FILE with `.log` for its suffix."""
    candidates = [first.with_suffix(LOG_SUFFIX)]
    if run_id:
        candidates.insert(0, (directory or first.parent) / f"{run_id}{LOG_SUFFIX}")
    for candidate in candidates:
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    return None


def _sum(values: Iterable[Any]) -> Any:
    known = [value for value in values if value is not None]
    return sum(known) if known else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def summarize(path: str | Path) -> RecordingSummary:
    """The summary of one recording (RecordingError if it is not a readable one)."""
    with Recording(path) as recording:
        end = recording.end_state()
        return _summary(recording, end)


def list_runs(directory: Path) -> tuple[list[RecordingSummary], list[RecordingError]]:
    """Every recording in a directory, newest first, and the files that could not be read."""
    summaries, errors = [], []
    for path in recordings(directory):
        try:
            summaries.append(summarize(path))
        except RecordingError as exc:
            errors.append(exc)
        except OSError as exc:
            errors.append(RecordingError(path, 0, f"cannot read it ({exc.strerror or exc})"))
    summaries.sort(key=lambda s: s.started_at, reverse=True)
    return summaries, errors


def _summary(recording: Recording, end: EndState) -> RecordingSummary:
    hello = recording.hello
    totals = end.state.totals()
    argv = hello.get("argv")
    command = shlex.join(str(a) for a in argv) if isinstance(argv, list) else ""
    state = "complete" if end.complete else "live" if end.live else "cut off"
    if end.complete and end.damage:
        state = "damaged"
    return RecordingSummary(
        path=recording.path,
        size=recording.size,
        started_at=end.started_at,
        duration=max(0.0, end.ended_at - end.started_at),
        command=command,
        pid=_int(hello.get("pid")),
        ppid=_int(hello.get("ppid")),
        processes=1,
        calls=_int(totals.get("calls")) if totals is not None else None,
        cost_usd=float(totals["cost_usd"]) if totals is not None and _number(totals.get("cost_usd")) else None,
        best_score=best_score(end.state.scopes.values(), end.ended_at),
        state=state,
        payloads=end.state.payloads,
        payloads_dropped=end.state.payloads_dropped,
        damage=tuple(str(d) for d in end.damage),
        run_id=hello.get("run_id") if isinstance(hello.get("run_id"), str) else None,
    )


def best_score(scopes: Iterable[dict[str, Any]], now: float | None = None) -> float | None:
    """The best score any optimizer run reached (as the optimizer view ranks trials); None if none ran."""
    from dspy_top.model.optimizers import EVALUATE, derive
    from dspy_top.model.scopes import scope_from_wire

    states = []
    for wire in scopes:
        try:
            states.append(scope_from_wire("recording", 0, wire, None))
        except (TypeError, ValueError):
            continue
    runs = derive(states, now if now is not None else time.time())
    scores = [run.best_score for run in runs if run.class_name != EVALUATE and run.best_score is not None]
    return max(scores) if scores else None


_number = finite  # a cost of NaN or infinity is no cost: unknown


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
