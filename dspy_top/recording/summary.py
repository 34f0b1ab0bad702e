"""One line per recording, for `dspy-top runs`: start, duration, command, calls, cost, best score, size.

Read from each file's end state (its footer, or its last checkpoint and what follows), so
listing a directory of large recordings reads little of each. Imports the model (pure), never
dspy or Textual.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from dspy_top.recording.frames import RecordingError
from dspy_top.recording.reader import EndState, Recording
from dspy_top.recording.runs import recordings


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

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path), "size": self.size, "started_at": self.started_at, "duration_s": self.duration,
            "command": self.command, "pid": self.pid, "ppid": self.ppid, "processes": self.processes,
            "calls": self.calls, "cost_usd": self.cost_usd, "best_score": self.best_score, "state": self.state,
            "payloads": self.payloads, "payloads_dropped": self.payloads_dropped, "damage": list(self.damage),
        }


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
    stats = end.state.stats
    totals = (stats or {}).get("totals") or {}
    argv = hello.get("argv")
    command = shlex.join(str(a) for a in argv) if isinstance(argv, list) else ""
    state = "complete" if end.complete else "live" if end.live else "cut off"
    if end.complete and end.damage:
        state = "damaged"
    return RecordingSummary(
        path=recording.path, size=recording.size, started_at=end.started_at,
        duration=max(0.0, end.ended_at - end.started_at), command=command,
        pid=_int(hello.get("pid")), ppid=_int(hello.get("ppid")), processes=1,
        calls=_int(totals.get("calls")) if stats is not None else None,
        cost_usd=float(totals["cost_usd"]) if isinstance(totals.get("cost_usd"), (int, float)) else None,
        best_score=best_score(end.state.scopes.values(), end.ended_at),
        state=state, payloads=end.state.payloads, payloads_dropped=end.state.payloads_dropped,
        damage=tuple(str(d) for d in end.damage),
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


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
