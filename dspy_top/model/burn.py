"""Burn rate and projections: what the run costs per minute and per hour, and where an evaluation ends up."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dspy_top.model.scopes import ScopeState

BURN_WINDOW = 60.0  # seconds: "recent" for money, long enough not to jump with every frame


@dataclass(frozen=True)
class EvalProjection:
    """The cost of the running `dspy.Evaluate` at its end, from its progress so far (done of total)."""

    process: str
    pid: int
    id: str
    label: str
    done: int
    total: int
    spent_usd: float
    cost_known: bool  # False when some of its calls had no price: the projection is a lower bound
    projected_usd: float | None  # None until an example is done, or when nothing is priced

    @property
    def remaining_usd(self) -> float | None:
        return None if self.projected_usd is None else max(0.0, self.projected_usd - self.spent_usd)


@dataclass(frozen=True)
class Burn:
    """Cost per minute and tokens per second over the last `window` seconds and since the start."""

    window: float
    cost_per_min: float
    cost_per_min_avg: float
    tokens_per_sec: float
    tokens_per_sec_avg: float
    evaluation: EvalProjection | None = None

    @property
    def cost_per_hour(self) -> float:
        """What another hour costs at the recent pace."""
        return 60.0 * self.cost_per_min


def eval_projection(scopes: Iterable[ScopeState]) -> EvalProjection | None:
    """The most recently started running evaluation, projected linearly from its examples done."""
    running = [s for s in scopes if s.running and s.kind == "eval" and s.total > 0]
    if not running:
        return None
    scope = max(running, key=lambda s: s.start)
    usage = scope.usage
    projected = None
    # Nothing heard about its usage yet, or nothing of it priced: no figure rather than a false $0.
    if scope.done > 0 and usage.calls > 0 and not (usage.unpriced_calls and usage.cost_usd == 0):
        projected = usage.cost_usd * max(scope.total, scope.done) / scope.done
    return EvalProjection(
        scope.process,
        scope.pid,
        scope.id,
        scope.label,
        scope.done,
        scope.total,
        usage.cost_usd,
        usage.unpriced_calls == 0,
        projected,
    )
