"""The optimizer view's values: a run (one compile or plain evaluation), its trials, and folded groups."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dspy_top.model.counters import EMPTY, Counters, total
from dspy_top.model.optimizers.rules import EVALUATE, rules_for
from dspy_top.model.scopes import ScopeState


@dataclass(frozen=True)
class Trial:
    """One evaluation inside an optimizer run (or the run itself, for a plain `Evaluate`)."""

    scope: ScopeState
    number: int  # MIPROv2 numbers its baseline 0, like its "default program"; others count from 1
    kind: str  # baseline, full, minibatch, zero-shot, labeled, unshuffled, bootstrapped, eval
    full: bool | None  # a full evaluation (counts for the best score); None when unknown
    duration: float
    best: bool = False

    @property
    def id(self) -> str:
        return self.scope.id

    @property
    def state(self) -> str:
        return self.scope.state

    @property
    def failed(self) -> bool:
        return self.scope.state == "failed"

    @property
    def score(self) -> float | None:
        """The final score; None while running and for a failed evaluation (never 0.0 for a failure)."""
        return self.scope.score if self.scope.state == "done" else None

    @property
    def running_score(self) -> float | None:
        return None if self.failed else self.scope.score_so_far

    @property
    def usage(self) -> Counters:
        return self.scope.usage

    @property
    def fraction(self) -> float:
        """How much of this evaluation is done (1 once it ended)."""
        if not self.scope.running:
            return 1.0
        return min(1.0, self.scope.done / self.scope.total) if self.scope.total else 0.0


@dataclass(frozen=True)
class OptimizerRun:
    """One optimizer `compile` (or one `dspy.Evaluate` outside any optimizer) and its trials."""

    process: str
    pid: int
    id: str
    class_name: str
    label: str  # "MIPROv2 (light)", "Evaluate (Predict)"
    state: str  # running | done | failed
    parent: str | None
    depth: int
    params: tuple[tuple[str, Any], ...]
    start: float
    end: float | None
    elapsed: float
    phase: str
    trials: tuple[Trial, ...]
    planned: int | None  # evaluations the run makes in all (its baseline included), when known
    planned_how: str | None
    current: Trial | None  # the running trial, if any
    best: Trial | None
    usage: Counters  # the whole run, nested compiles and bootstrapping included
    trial_usage: Counters  # the trials' own calls
    cost_to_finish: float | None
    time_to_finish: float | None
    metric_calls: int | None = None  # GEPA: examples evaluated so far, against `metric_budget`
    metric_budget: int | None = None
    error: str | None = None
    children: tuple[str, ...] = ()
    # Under way when `dspy-top attach` came: when, and how many of its evaluations it had made by then
    # (None: not known, only that some may have been missed); trials are numbered after them.
    joined_at: float | None = None
    missed_trials: int | None = None
    usage_known: bool = True  # False for an evaluation joined mid-way (its calls cannot be told apart)

    @property
    def joined(self) -> bool:
        return self.joined_at is not None

    @property
    def key(self) -> str:
        return f"{self.process}|{self.id}"

    @property
    def best_score(self) -> float | None:
        return self.best.score if self.best is not None else None

    @property
    def last_number(self) -> int | None:
        """The number the last planned trial will have."""
        if self.planned is None:
            return None
        return self.planned - 1 + rules_for(self.class_name).first_number

    @property
    def trial_progress(self) -> str:
        """`3/10`, `3` (N unknown) or `-` (no trial yet)."""
        trial = self.current or (self.trials[-1] if self.trials else None)
        if trial is None:
            return "-" if not self.planned or self.last_number is None else f"-/{self.last_number}"
        if self.last_number is None or self.planned == 1 and self.class_name == EVALUATE:
            return str(trial.number)
        return f"{trial.number}/{self.last_number}"

    @property
    def spent_before_trials(self) -> Counters:
        """Calls of the run outside its own trials (bootstrapping, instruction proposal, reflection)."""
        return minus(self.usage, self.trial_usage)


@dataclass(frozen=True)
class RunGroup:
    """Finished nested bootstrapping compiles of one class under one run, shown as one row."""

    key: str
    class_name: str
    runs: tuple[OptimizerRun, ...]

    @property
    def depth(self) -> int:
        return min(run.depth for run in self.runs)

    @property
    def usage(self) -> Counters:
        return total(run.usage for run in self.runs)


def rows_of(runs: tuple[OptimizerRun, ...]) -> list[OptimizerRun | RunGroup]:
    """The runs in tree order, with each root's finished nested bootstrappers folded per class."""
    out: list[OptimizerRun | RunGroup] = []
    groups: dict[str, list[OptimizerRun]] = {}
    root: OptimizerRun | None = None
    for run in runs:
        if run.depth == 0:
            root = run
        if root is not None and run.depth > 0 and rules_for(run.class_name).bootstraps and run.state != "running":
            key = f"{root.key}|{run.class_name}"
            if key not in groups:
                groups[key] = []
                out.append(RunGroup(key, run.class_name, ()))
            groups[key].append(run)
            continue
        out.append(run)
    return [RunGroup(r.key, r.class_name, tuple(groups[r.key])) if isinstance(r, RunGroup) else r for r in out]


def minus(whole: Counters, part: Counters) -> Counters:
    """What `whole` holds beyond `part` (counts only; histograms are not subtracted)."""
    if part is EMPTY:
        return whole
    return Counters(
        calls=max(0, whole.calls - part.calls),
        errors=max(0, whole.errors - part.errors),
        retries=max(0, whole.retries - part.retries),
        cache_hits=max(0, whole.cache_hits - part.cache_hits),
        prompt_tokens=max(0, whole.prompt_tokens - part.prompt_tokens),
        completion_tokens=max(0, whole.completion_tokens - part.completion_tokens),
        cached_tokens=max(0, whole.cached_tokens - part.cached_tokens),
        reasoning_tokens=max(0, whole.reasoning_tokens - part.reasoning_tokens),
        cost_usd=max(0.0, whole.cost_usd - part.cost_usd),
        unpriced_calls=max(0, whole.unpriced_calls - part.unpriced_calls),
        unmetered_calls=max(0, whole.unmetered_calls - part.unmetered_calls),
        cost_saved_usd=max(0.0, whole.cost_saved_usd - part.cost_saved_usd),
        latency_s=max(0.0, whole.latency_s - part.latency_s),
        in_flight=max(0, whole.in_flight - part.in_flight),
    )
