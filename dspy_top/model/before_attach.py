"""What a job attached with `dspy-top attach` did before: counted from DSPy's own history.

Those calls are already in the job's totals (a `(before attach)` module of each model); this
says how many there were and what may be missing (docs/protocol.md, `stats.before_attach`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class BeforeAttach:
    """The `before_attach` summary of one attached process."""

    at: float  # when dspy-top attached
    calls: int  # counted from DSPy's history, calls in flight at the attach included
    history: str  # complete, capped (older entries dropped), disabled, unknown
    missing: int | None  # calls that may be missing from `calls`; None: unknown how many
    in_flight: int = 0  # calls running at the attach (counted as they end)
    in_flight_counted: int = 0
    settled: bool = True  # False while calls in flight at the attach may still end and be counted
    first_at: float | None = None  # the oldest counted call's end

    @classmethod
    def from_record(cls, record) -> BeforeAttach:
        """From the checked `stats.before_attach` (dspy_top.schema.BeforeAttachRecord)."""
        return cls(
            at=record.at or 0.0,
            calls=record.calls,
            history=record.history,
            missing=record.missing,
            in_flight=record.in_flight,
            in_flight_counted=record.in_flight_counted,
            settled=record.settled,
            first_at=record.first_at,
        )

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> BeforeAttach:
        missing = wire.get("missing")
        first = wire.get("first_at")
        return cls(
            at=float(wire.get("at") or 0.0),
            calls=int(wire.get("calls") or 0),
            history=str(wire.get("history") or "unknown"),
            missing=int(missing) if missing is not None else None,
            in_flight=int(wire.get("in_flight") or 0),
            in_flight_counted=int(wire.get("in_flight_counted") or 0),
            settled=bool(wire.get("settled", True)),
            first_at=float(first) if first is not None else None,
        )

    @property
    def known(self) -> bool:
        """False when DSPy kept no history to count (it was off)."""
        return not (self.history == "disabled" and self.calls == 0)

    def describe(self) -> str:
        """`412 calls before attach, from DSPy's history`, and what may be missing."""
        if not self.known:
            return "calls before attach unknown (DSPy's history is off)"
        text = f"{self.calls:,} call{'s' if self.calls != 1 else ''} before attach, from DSPy's history"
        if self.history == "capped":
            return text + " (it was full: older calls are not counted)"
        if self.history == "disabled":
            return text + " (it is off now: some calls may be missing)"
        running = self.in_flight - self.in_flight_counted
        if not self.settled and running > 0:
            return text + f" (+{running:,} in flight then, counted as they end)"
        if self.missing:
            return text + f" ({self.missing:,} may be missing)"
        if self.missing is None:
            return text + " (some may be missing)"
        return text

    def short(self) -> str:
        """For a process row: `412 before attach`, `412+ before attach`, `? before attach`."""
        if not self.known:
            return "? before attach"
        exact = self.missing == 0 and self.history == "complete"
        return f"{self.calls:,}{'' if exact else '+'} before attach"

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "calls": self.calls,
            "history": self.history,
            "missing": self.missing,
            "in_flight": self.in_flight,
            "in_flight_counted": self.in_flight_counted,
            "settled": self.settled,
            "first_at": self.first_at,
            "text": self.describe(),
        }


def combined(parts: Iterable[BeforeAttach | None]) -> str | None:
    """One phrase for the header about every attached process in view, or None."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0].describe()
    known = [p for p in parts if p.known]
    calls = sum(p.calls for p in known)
    exact = len(known) == len(parts) and all(p.missing == 0 and p.history == "complete" for p in parts)
    return f"{calls:,}{'' if exact else '+'} calls before attach in {len(parts)} processes, from DSPy's history"
