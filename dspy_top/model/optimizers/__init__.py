"""Optimizer runs derived from scopes: trials, phase, best score, spend and a projection to finish.

`types` holds the values, `rules` what each optimizer class does with its evaluations (one
entry per class), `derive` the derivation. Pure: no I/O, no UI, a fake clock in the tests.
"""

from dspy_top.model.optimizers.derive import derive, key_params, planned_trials
from dspy_top.model.optimizers.rules import EVALUATE, RULES, OptimizerRules, rules_for
from dspy_top.model.optimizers.types import OptimizerRun, RunGroup, Trial, rows_of

__all__ = [
    "EVALUATE",
    "RULES",
    "OptimizerRules",
    "OptimizerRun",
    "RunGroup",
    "Trial",
    "derive",
    "key_params",
    "planned_trials",
    "rows_of",
    "rules_for",
]
