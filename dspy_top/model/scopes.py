"""Evaluations and optimizer compiles (scopes) as the process reports them, and their one-line summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from dspy_top.model.counters import EMPTY, Counters


@dataclass(frozen=True)
class ScopeState:
    """One `dspy.Evaluate` call or optimizer `compile` in one process."""

    process: str
    pid: int
    id: str
    kind: str  # "eval" | "compile"
    state: str  # "running" | "done" | "failed"
    start: float
    end: float | None
    parent: str | None
    label: str  # optimizer class, or the evaluated program
    done: int
    total: int
    score_sum: float
    score: float | None
    usage: Counters
    error: str | None

    @property
    def running(self) -> bool:
        return self.state == "running"

    @property
    def score_so_far(self) -> float | None:
        """Percent, as `Evaluate` reports it."""
        if self.score is not None:
            return self.score
        return 100.0 * self.score_sum / self.done if self.done else None


def scope_from_wire(process: str, pid: int, wire: Mapping[str, Any], previous: ScopeState | None) -> ScopeState:
    """Merge one scope message (start, progress, end or a stats entry) into what was known."""

    def pick(key: str, default: Any) -> Any:
        if key in wire and wire[key] is not None:
            return wire[key]
        return getattr(previous, key) if previous is not None and hasattr(previous, key) else default

    kind = str(wire.get("kind") or (previous.kind if previous else "eval"))
    if kind == "compile":
        label = str(wire.get("class") or (previous.label if previous else "compile"))
    else:
        label = str(wire.get("program") or (previous.label if previous else "Evaluate"))
    usage = Counters.from_wire(wire["usage"]) if wire.get("usage") else (previous.usage if previous else EMPTY)
    score = wire.get("score")
    return ScopeState(
        process=process, pid=pid, id=str(wire.get("id")), kind=kind,
        state=str(pick("state", "running")), start=float(pick("start", 0.0)),
        end=float(wire["end"]) if wire.get("end") is not None else (previous.end if previous else None),
        parent=pick("parent", None), label=label,
        done=int(pick("done", 0)), total=int(pick("total", 0)),
        score_sum=float(pick("score_sum", 0.0)),
        score=float(score) if score is not None else (previous.score if previous else None),
        usage=usage, error=pick("error", None),
    )


def progress_line(scopes: list[ScopeState], now: float) -> str | None:
    """One line about the optimizer or evaluation running now, or None."""
    running = [s for s in scopes if s.running]
    if not running:
        return None
    compiles = [s for s in running if s.kind == "compile"]
    evals = [s for s in running if s.kind == "eval"]
    parts: list[str] = []
    if compiles:
        top = min(compiles, key=lambda s: s.start)
        parts.append(f"{top.label} compiling {_clock(now - top.start)} · {top.usage.calls:,} calls · ${top.usage.cost_usd:.2f}")
    if evals:
        latest = max(evals, key=lambda s: s.start)
        text = f"eval {latest.done}/{latest.total}" if latest.total else f"eval {latest.done}"
        score = latest.score_so_far
        if score is not None:
            text += f" · {score:.1f}%"
        if latest.total:
            filled = round(8 * latest.done / latest.total)
            text += " " + "▓" * filled + "░" * (8 - filled)
        parts.append(text)
    if len(running) > 1 and not compiles and len(evals) > 1:
        parts.append(f"{len(evals)} evals running")
    return " · ".join(parts)


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
