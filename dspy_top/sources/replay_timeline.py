"""A replay's timeline: the recording's span and optimizer trials, and where a seek asks to go.

`parse_goto` reads what the user types after `g` (and `dspy-top replay --at`): a moment from
the start (`12:30`, `1:02:03`, `90s`), a step from the position (`+30s`, `-2m`), a share of
the whole (`40%`), an optimizer trial (`trial 7`), `start` or `end`. `Timeline.moment` turns it
into a time in the recording; a trial is resolved by the source, which seeks to the moment the
trial's evaluation ended (its score in). Pure: the model's optimizer derivation, nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from dspy_top.model.optimizers import EVALUATE, derive
from dspy_top.model.scopes import scope_from_wire

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smh]?)$")
_CLOCK = re.compile(r"^(\d+):(\d{1,2})(?::(\d{1,2}))?(?:\.(\d+))?$")
_TRIAL = re.compile(r"^(?:trial|t|#)\s*(\d+)$")
GOTO_HELP = "12:30 or 1:02:03 from the start, +30s / -2m from here, 40%, trial 7, start, end"


@dataclass(frozen=True)
class Goto:
    """Where a seek asks to go. `kind`: at (seconds from the start), by (seconds from the
    position), fraction, trial, start, end."""

    kind: str
    value: float = 0.0

    def describe(self) -> str:
        if self.kind == "at":
            return f"{clock(self.value)} from the start"
        if self.kind == "by":
            return f"{'+' if self.value >= 0 else '-'}{clock(abs(self.value))}"
        if self.kind == "fraction":
            return f"{100 * self.value:g}%"
        if self.kind == "trial":
            return f"trial {int(self.value)}"
        return self.kind


def parse_goto(text: str) -> Goto:
    """What the user typed, as a `Goto`; ValueError (its message for the user) when it is none."""
    word = text.strip().lower()
    if word in ("start", "begin", "beginning", "home"):
        return Goto("start")
    if word in ("end", "last"):
        return Goto("end")
    if word.endswith("%"):
        try:
            share = float(word[:-1])
        except ValueError:
            raise ValueError(f"not a percentage: {text.strip()!r}") from None
        if not 0 <= share <= 100:
            raise ValueError(f"a percentage is from 0% to 100%, not {text.strip()}")
        return Goto("fraction", share / 100)
    trial = _TRIAL.match(word)
    if trial:
        return Goto("trial", float(trial.group(1)))
    sign = word[:1] if word[:1] in "+-" else ""
    seconds = _seconds(word[len(sign) :].strip())
    if seconds is None:
        raise ValueError(f"cannot tell where {text.strip()!r} is: try {GOTO_HELP}")
    if sign:
        return Goto("by", seconds if sign == "+" else -seconds)
    return Goto("at", seconds)


def _seconds(word: str) -> float | None:
    duration = _DURATION.match(word)
    if duration:
        return float(duration.group(1)) * _UNITS[duration.group(2) or "s"]
    parts = _CLOCK.match(word)
    if parts:
        first, second, third, fraction = parts.groups()
        if third is None:
            value = int(first) * 60 + int(second)
        else:
            value = int(first) * 3600 + int(second) * 60 + int(third)
        return value + (float(f"0.{fraction}") if fraction else 0.0)
    return None


def clock(seconds: float) -> str:
    """`12:05` or `1:02:03`: a stretch of the recording, as the replay bar shows it."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@dataclass(frozen=True)
class TrialMark:
    """One optimizer trial in the recording: which run and process, and when it started and ended."""

    run: str  # the optimizer run's label, "MIPROv2 (light)"
    run_start: float
    number: int  # as the optimizer view numbers it (MIPROv2's baseline is 0)
    key: str  # the process (its recording)
    scope_id: str  # the trial's evaluation
    start: float
    end: float | None  # None: still running when the recording ends
    score: float | None


@dataclass(frozen=True)
class Timeline:
    """The span of a replay's recordings and the trials of their optimizer runs, oldest run first."""

    start: float
    end: float
    trials: tuple[TrialMark, ...] = ()

    def moment(self, goto: Goto, position: float) -> float:
        """The time in the recording a (non-trial) `Goto` means, kept within it."""
        if goto.kind == "start":
            at = self.start
        elif goto.kind == "end":
            at = self.end
        elif goto.kind == "fraction":
            at = self.start + goto.value * (self.end - self.start)
        elif goto.kind == "at":
            at = self.start + goto.value
        elif goto.kind == "by":
            at = position + goto.value
        else:
            raise ValueError(f"{goto.describe()} is not a moment")
        return min(self.end, max(self.start, at))

    def trial(self, number: int) -> TrialMark:
        """Trial `number` of the first optimizer run that has one; ValueError saying which there are."""
        for mark in self.trials:
            if mark.number == number:
                return mark
        if not self.trials:
            raise ValueError("this recording has no optimizer trials")
        numbers = sorted({mark.number for mark in self.trials})
        raise ValueError(f"no trial {number}: the trials are {numbers[0]} to {numbers[-1]}")


def trial_marks(key: str, pid: int, scopes: Iterable[dict[str, Any]], now: float) -> list[TrialMark]:
    """The trials of every optimizer run among one process's scopes (as a recording's state holds them)."""
    states = []
    for wire in scopes:
        try:
            states.append(scope_from_wire(key, pid, wire, None))
        except (TypeError, ValueError):
            continue  # a scope the file holds damaged: the others still count
    marks = []
    for run in sorted(derive(states, now), key=lambda r: r.start):
        if run.class_name == EVALUATE:
            continue
        for trial in run.trials:
            marks.append(
                TrialMark(
                    run.label, run.start, trial.number, key, trial.id, trial.scope.start, trial.scope.end, trial.score
                )
            )
    return marks
