"""Exceptions dspy-top raises into a job, on purpose and only these: the budget guard's."""

from __future__ import annotations


class BudgetExceeded(BaseException):
    """An LM call was refused because a dspy-top budget was spent.

    A BaseException, like KeyboardInterrupt, on purpose: `dspy.Evaluate`, the optimizers
    and DSPy's parallel executor turn an ordinary Exception in a program into a failed
    example or a 0.0 score and carry on spending; this one goes through them and stops
    the run. Catch it by name if your program should carry on.
    """

    def __init__(
        self, message: str, *, spent_usd: float | None = None, budget_usd: float | None = None, scope: str = "total"
    ) -> None:
        super().__init__(message)
        self.spent_usd = spent_usd
        self.budget_usd = budget_usd
        self.scope = scope


class BudgetStop(BudgetExceeded, SystemExit):
    """`on_exceed="stop"` (or a viewer's stop request): ends the run cleanly.

    Also a SystemExit, so an uncaught one ends the process with its message and exit
    status 1, and no traceback.
    """

    def __init__(self, message: str, **details) -> None:
        BudgetExceeded.__init__(self, message, **details)
        self.code = message
