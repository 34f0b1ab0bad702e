"""Budgets as the viewer sees them: its own `--budget` over everything attached, and each job's guard.

The viewer's budget only warns (it cannot refuse calls); a job's guard (`dspy_top.instrument(
budget_usd=...)`) acts inside the job and reports its limits and alerts in `stats.budget` and
`budget` messages (docs/protocol.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from dspy_top.budget_levels import WARN_AT
from dspy_top.pricing import usd

if TYPE_CHECKING:
    from dspy_top.schema.records import AlertRecord

LEVELS = (80, 100)  # percent: each warns once


@dataclass(frozen=True)
class ViewerBudget:
    """`--budget USD` against the billed cost of every process the viewer knows (whatever the focus)."""

    usd: float
    spent: float
    cost_known: bool  # False when some calls had no price: `spent` is a lower bound

    @property
    def fraction(self) -> float:
        return self.spent / self.usd if self.usd > 0 else 0.0

    @property
    def level(self) -> int:
        """100 once spent, 80 from 80%, else 0."""
        fraction = self.fraction
        return 100 if fraction >= 1.0 else 80 if fraction >= WARN_AT else 0

    def message(self, level: int) -> str:
        lower = "" if self.cost_known else " (at least: some calls have no known price)"
        if level >= 100:
            return f"budget {usd(self.usd)} reached: {usd(self.spent)} spent{lower}"
        return f"{level}% of the {usd(self.usd)} budget spent: {usd(self.spent)}{lower}"


class BudgetAlarm:
    """Which of the 80% and 100% levels a budget newly crossed: each fires once, in order."""

    def __init__(self) -> None:
        self.fired: set[int] = set()

    def crossed(self, budget: ViewerBudget | None) -> list[int]:
        if budget is None:
            return []
        new = [level for level in LEVELS if budget.level >= level and level not in self.fired]
        self.fired.update(new)
        return new


@dataclass(frozen=True)
class BudgetLimit:
    """One of a job's limits and what the job has spent against it (as the job prices calls)."""

    scope: str  # "total" | "module" | "model"
    name: str
    usd: float
    spent: float

    @property
    def fraction(self) -> float:
        return self.spent / self.usd if self.usd > 0 else 0.0

    @property
    def label(self) -> str:
        return "total" if self.scope == "total" else f"{self.scope} {self.name}"


@dataclass(frozen=True)
class BudgetAlert:
    """A threshold the job crossed, or a stop it was asked for (a `budget` message)."""

    process: str
    pid: int
    level: str  # "80", "100" or "stop"
    scope: str  # "total" | "module" | "model" | "viewer"
    name: str
    spent_usd: float | None
    budget_usd: float | None
    action: str
    message: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.process, self.level, self.scope, self.name)

    @classmethod
    def from_record(cls, process: str, pid: int, record: AlertRecord) -> BudgetAlert:
        return cls(
            process,
            pid,
            record.level,
            record.scope,
            record.name,
            record.spent_usd,
            record.budget_usd,
            record.action,
            record.message,
        )


@dataclass(frozen=True)
class JobBudget:
    """One process's budget guard: what it does when a limit is spent, its limits and its alerts so far."""

    process: str
    pid: int
    on_exceed: str  # "warn" | "raise" | "stop"
    limits: tuple[BudgetLimit, ...]
    alerts: tuple[BudgetAlert, ...]

    @property
    def total(self) -> BudgetLimit | None:
        return next((limit for limit in self.limits if limit.scope == "total"), None)

    @property
    def worst(self) -> BudgetLimit | None:
        return max(self.limits, key=lambda limit: limit.fraction, default=None)
