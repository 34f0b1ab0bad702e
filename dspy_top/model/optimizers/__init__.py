"""Optimizer runs derived from scopes: trials, phase, best score, spend and a projection to finish."""

from dspy_top.model.optimizers.derive import (
    EVALUATE,
    OptimizerRun,
    RunGroup,
    Trial,
    derive,
    optimizer_line,
    planned_trials,
    rows_of,
    trial_summary,
)

__all__ = ["EVALUATE", "OptimizerRun", "RunGroup", "Trial", "derive", "optimizer_line", "planned_trials", "rows_of",
           "trial_summary"]
