"""What each optimizer class does with its evaluations, as one table: adding an optimizer is adding an entry.

An entry says how the optimizer's evaluations are numbered and kinded, which of them are full
evaluations, how many it plans and how that is known, the phases it goes through and what its
projected spend scales with. A class without an entry gets `DEFAULT` (nothing guessed).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dspy_top.model.scopes import ScopeState

EVALUATE = "Evaluate"  # the class shown for a `dspy.Evaluate` run outside any optimizer

# How an optimizer's full evaluations (those that count for the best score) are known.
FULL_IF_SAID = "said"  # the evaluation's `metric_key` says eval_full / eval_minibatch; else unknown
FULL_IF_VALSET = "valset"  # as said, else an evaluation over the whole valset (trainset) is full
ALWAYS_FULL = "always"  # every evaluation scores the whole valset

# MIPROv2's auto settings and trial formula, as DSPy 3.x defines them (mipro_optimizer_v2.py):
# trials = int(max(2 * vars * log2(n), 1.5 * n)) with vars = predictors (x2 with demos); it
# evaluates on min(valset, val_size) examples and uses minibatches when that is over 50.
MIPRO_AUTO = {"light": (6, 100), "medium": (12, 300), "heavy": (18, 1000)}
MIPRO_MIN_MINIBATCH = 50

Plan = Callable[[ScopeState], "tuple[int | None, str | None]"]


def _unknown(scope: ScopeState) -> tuple[int | None, str | None]:
    return None, None


@dataclass(frozen=True)
class OptimizerRules:
    """One optimizer class's evaluations: numbering, kinds, fullness, plan, phases and projected spend."""

    first_number: int = 1  # the number its first evaluation gets (MIPROv2 numbers its baseline 0)
    # Kinds of its first evaluations, in order; each is a full evaluation. Left out when the
    # compile was given `seeds_unless` (random search's `restrict` picks other seeds).
    seed_kinds: tuple[str, ...] = ()
    seeds_unless: str | None = None
    later_kind: str | None = None  # the kind of every evaluation after the seeds (else full/minibatch/eval)
    full: str = FULL_IF_SAID
    plan: Plan = _unknown  # (evaluations planned in all, how that is known); (None, None) when unknown
    bootstraps: bool = False  # makes demos and no evaluation; folded per class once finished under a parent
    own_phase: str | None = None  # its phase whenever no evaluation or nested compile of it runs
    first_phase: str | None = None  # its phase while its first evaluation runs (else "trial N")
    before_trials: tuple[str, str] | None = None  # phase before any evaluation: (calling the LM, idle)
    between_trials: str = "between trials"
    own_calls_scale: bool = True  # its calls outside evaluations grow with the trials (projection)
    metric_budget: str | None = None  # the parameter holding its budget of metric calls, when it has one


def _makes_no_evaluations(scope: ScopeState) -> tuple[int | None, str | None]:
    return 0, f"{scope.label} makes no evaluations"


def _random_search_plan(scope: ScopeState) -> tuple[int | None, str | None]:
    sets = as_int(scope.params.get("num_candidate_sets"))
    if sets is None or "restrict" in scope.arguments:
        return None, None
    return sets + 3, "num_candidate_programs + 3 (zero-shot, labeled, unshuffled)"


def _mipro_plan(scope: ScopeState) -> tuple[int | None, str | None]:
    steps = as_int(scope.arguments.get("minibatch_full_eval_steps")) or 5
    auto = scope.params.get("auto")
    valset = scope.valset
    if valset is None and scope.trainset is not None:
        valset = min(1000, max(1, int(scope.trainset * 0.8)))  # MIPROv2 splits the trainset itself
    if auto is None:
        trials = as_int(scope.arguments.get("num_trials"))
        if trials is None:
            return None, None
        minibatch = bool(scope.arguments.get("minibatch", True))
        how = "num_trials"
    else:
        settings = MIPRO_AUTO.get(str(auto))
        demos = param(scope, "max_bootstrapped_demos"), param(scope, "max_labeled_demos")
        if settings is None or scope.predictors is None or valset is None or None in demos:
            return None, None
        candidates, val_size = settings
        variables = scope.predictors * (1 if demos == (0, 0) else 2)
        trials = int(max(2 * variables * math.log2(candidates), 1.5 * candidates))
        minibatch = min(valset, val_size) > MIPRO_MIN_MINIBATCH
        how = f"auto={auto}: {trials} trials for {scope.predictors} predictor(s), as MIPROv2 computes it"
    if not minibatch:
        return trials + 1, f"{how} + baseline"
    # Minibatch mode adds a full evaluation every `steps` trials and one at the end, as MIPROv2 counts.
    return trials + trials // steps + 1 + (1 if trials % steps else 0), f"{how}, minibatch + full evaluations"


RULES: dict[str, OptimizerRules] = {
    "BootstrapFewShot": OptimizerRules(plan=_makes_no_evaluations, bootstraps=True, own_phase="bootstrapping demos"),
    "LabeledFewShot": OptimizerRules(plan=_makes_no_evaluations, bootstraps=True, own_phase="choosing labeled demos"),
    # Seeds -3, -2, -1 come first: zero-shot, labeled demos only, unshuffled bootstrap; every
    # candidate is scored on the whole valset, and bootstrapping between candidates is spend.
    "BootstrapFewShotWithRandomSearch": OptimizerRules(
        seed_kinds=("zero-shot", "labeled", "unshuffled"),
        seeds_unless="restrict",
        later_kind="bootstrapped",
        full=ALWAYS_FULL,
        plan=_random_search_plan,
    ),
    # Trial 0 is the baseline ("default program"); instructions are proposed before any trial,
    # so the run's own calls do not scale with the trials.
    "MIPROv2": OptimizerRules(
        first_number=0,
        seed_kinds=("baseline",),
        plan=_mipro_plan,
        first_phase="baseline evaluation",
        before_trials=("proposing instructions", "preparing"),
        own_calls_scale=False,
    ),
    # GEPA scores candidates on the valset and reflects on minibatches; its budget is metric calls.
    "GEPA": OptimizerRules(full=FULL_IF_VALSET, between_trials="reflecting", metric_budget="max_metric_calls"),
}
DEFAULT = OptimizerRules()  # any other optimizer: numbered from 1, full only when said, plan unknown
# A plain `dspy.Evaluate` outside any optimizer (not a compile class): one full evaluation,
# projected by its examples.
PLAIN_EVALUATE = OptimizerRules(plan=lambda scope: (1, "a single evaluation"), own_phase="evaluating", full=ALWAYS_FULL)


def rules_for(class_name: str) -> OptimizerRules:
    """The rules of the optimizer class a compile scope names."""
    return RULES.get(class_name, DEFAULT)


def param(scope: ScopeState, name: str) -> Any:
    """A compile keyword argument, else the optimizer's attribute of that name."""
    value = scope.arguments.get(name)
    return value if value is not None else scope.params.get(name)


def as_int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
