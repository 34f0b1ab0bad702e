"""Optimizer runs derived from one process's scopes: trials, phase, best score, spend and a projection.

A pure derivation over `ScopeState`s (see docs/protocol.md, "Scopes"), driven by each class's
entry in `rules.RULES`. What the wire does not say stays None (unknown) rather than guessed;
each entry's `plan` says how a known trial count was found (`OptimizerRun.planned_how`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dspy_top.model.counters import Counters, total
from dspy_top.model.optimizers.rules import (
    ALWAYS_FULL,
    EVALUATE,
    FULL_IF_VALSET,
    PLAIN_EVALUATE,
    OptimizerRules,
    as_int,
    param,
    rules_for,
)
from dspy_top.model.optimizers.types import OptimizerRun, Trial, minus
from dspy_top.model.scopes import ScopeState

# Compile parameters worth a glance, in display order: (wire name, shown name). `arguments`
# (compile keyword arguments) override `params` (the optimizer's attributes).
KEY_PARAMS = (
    ("auto", "auto"),
    ("num_trials", "num_trials"),
    ("num_candidates", "num_candidates"),
    ("num_candidate_sets", "num_candidate_programs"),
    ("max_metric_calls", "max_metric_calls"),
    ("max_full_evals", "max_full_evals"),
    ("num_threads", "num_threads"),
    ("max_bootstrapped_demos", "max_bootstrapped_demos"),
    ("max_num_samples", "max_bootstrapped_demos"),
    ("max_labeled_demos", "max_labeled_demos"),
    ("k", "k"),
    ("minibatch", "minibatch"),
    ("minibatch_size", "minibatch_size"),
    ("reflection_minibatch_size", "reflection_minibatch_size"),
    ("stop_at_score", "stop_at_score"),
)


def derive(scopes: Iterable[ScopeState], now: float) -> tuple[OptimizerRun, ...]:
    """Every optimizer run of one or more processes, parents before their nested runs."""
    by_process: dict[str, list[ScopeState]] = {}
    for scope in scopes:
        by_process.setdefault(scope.process, []).append(scope)
    runs: list[OptimizerRun] = []
    for process_scopes in by_process.values():
        runs.extend(_derive_process(process_scopes, now))
    return tuple(runs)


def planned_trials(scope: ScopeState) -> tuple[int | None, str | None]:
    """How many evaluations the compile will run in all, and how that is known; (None, None) when unknown."""
    return rules_for(scope.label).plan(scope)


def _derive_process(scopes: list[ScopeState], now: float) -> list[OptimizerRun]:
    by_id = {s.id: s for s in scopes}
    children: dict[str | None, list[ScopeState]] = {}
    for scope in scopes:
        parent = scope.parent if scope.parent in by_id else None
        if scope.parent is not None and parent is None and scope.kind == "eval":
            continue  # an evaluation whose optimizer is no longer known: no run to put it in
        children.setdefault(parent, []).append(scope)
    for kids in children.values():
        kids.sort(key=lambda s: (s.start, _number_of(s.id)))
    roots = [s for s in children.get(None, ()) if s.kind == "compile" or s.kind == "eval"]
    # Running runs first (oldest first), then finished ones, newest first.
    roots.sort(key=lambda s: (not s.running, s.start if s.running else -s.start))
    out: list[OptimizerRun] = []

    def visit(scope: ScopeState, depth: int) -> None:
        kids = children.get(scope.id, [])
        if scope.kind == "eval":
            out.append(_evaluate_run(scope, now, depth))
            return
        out.append(_compile_run(scope, kids, now, depth))
        for kid in kids:
            if kid.kind == "compile":
                visit(kid, depth + 1)

    for root in roots:
        visit(root, 0)
    return out


def _number_of(scope_id: str) -> int:
    tail = scope_id.rpartition("-")[2]
    return int(tail) if tail.isdigit() else 0


# --- one run ---------------------------------------------------------------------------


def _evaluate_run(scope: ScopeState, now: float, depth: int) -> OptimizerRun:
    """A plain `dspy.Evaluate`: one trial, projected by its examples."""
    rules = PLAIN_EVALUATE
    trial = Trial(scope, rules.first_number, "eval", True, _duration(scope, now))
    best = trial if trial.score is not None else None
    if best is not None:
        trial = Trial(scope, trial.number, "eval", True, trial.duration, best=True)
        best = trial
    cost_to_finish = time_to_finish = None
    if not scope.running:
        cost_to_finish, time_to_finish = (0.0, 0.0) if scope.state == "done" else (None, None)
    elif scope.done and scope.total and scope.usage_known and not scope.joined:
        remaining = max(0, scope.total - scope.done)
        cost_to_finish = _priced(scope.usage, scope.usage.cost_usd / scope.done * remaining)
        time_to_finish = (now - scope.start) / scope.done * remaining
    params = tuple(
        (k, v) for k, v in (("num_threads", scope.num_threads), ("examples", scope.total or None)) if v is not None
    )
    label = f"{EVALUATE} ({scope.label})" if scope.label and scope.label != EVALUATE else EVALUATE
    planned, how = rules.plan(scope)
    return OptimizerRun(
        process=scope.process,
        pid=scope.pid,
        id=scope.id,
        class_name=EVALUATE,
        label=label,
        state=scope.state,
        parent=None,
        depth=depth,
        params=params,
        start=scope.start,
        end=scope.end,
        elapsed=_duration(scope, now),
        phase=_end_phase(scope) or rules.own_phase,
        trials=(trial,),
        planned=planned,
        planned_how=how,
        current=trial if scope.running else None,
        best=best,
        usage=scope.usage,
        trial_usage=scope.usage,
        cost_to_finish=cost_to_finish,
        time_to_finish=time_to_finish,
        error=scope.error,
        joined_at=_joined_at(scope),
        usage_known=scope.usage_known,
    )


def _compile_run(scope: ScopeState, kids: list[ScopeState], now: float, depth: int) -> OptimizerRun:
    rules = rules_for(scope.label)
    evals = [k for k in kids if k.kind == "eval"]
    nested = [k for k in kids if k.kind == "compile"]
    trials = _trials(scope, rules, evals, now)
    best = _best(trials)
    if best is not None:
        trials = [Trial(t.scope, t.number, t.kind, t.full, t.duration, best=t is best) for t in trials]
        best = next(t for t in trials if t.best)
    planned, how = rules.plan(scope)
    budget = as_int(param(scope, rules.metric_budget)) if rules.metric_budget else None
    metric_calls = sum(t.scope.done for t in trials) if rules.metric_budget else None
    current = next((t for t in reversed(trials) if t.scope.running), None)
    trial_usage = total(t.usage for t in trials)
    run = dict(
        process=scope.process,
        pid=scope.pid,
        id=scope.id,
        class_name=scope.label,
        label=_label(scope),
        state=scope.state,
        parent=scope.parent,
        depth=depth,
        params=key_params(scope),
        start=scope.start,
        end=scope.end,
        elapsed=_duration(scope, now),
        trials=tuple(trials),
        planned=planned,
        planned_how=how,
        current=current,
        best=best,
        usage=scope.usage,
        trial_usage=trial_usage,
        metric_calls=metric_calls,
        metric_budget=budget,
        error=scope.error,
        children=tuple(k.id for k in nested),
        joined_at=_joined_at(scope),
        missed_trials=_missed(scope),
    )
    phase = _end_phase(scope) or _phase(scope, rules, trials, nested, planned, current)
    cost, time_left = _projection(scope, rules, trials, nested, planned, budget, metric_calls, now)
    return OptimizerRun(**run, phase=phase, cost_to_finish=cost, time_to_finish=time_left)


def _trials(scope: ScopeState, rules: OptimizerRules, evals: list[ScopeState], now: float) -> list[Trial]:
    seeds = rules.seed_kinds if rules.seeds_unless is None or rules.seeds_unless not in scope.arguments else ()
    full_size = scope.valset if scope.valset is not None else scope.trainset
    trials = []
    offset = _missed(scope) or 0  # evaluations made before `dspy-top attach`: numbers go on from them
    for index, evaluation in enumerate(evals, offset):
        full = _full(rules, evaluation, full_size)
        kind = "full" if full else "minibatch" if full is False else "eval"
        if index < len(seeds):
            kind, full = seeds[index], True
        elif seeds and rules.later_kind is not None:
            kind = rules.later_kind
        trials.append(Trial(evaluation, index + rules.first_number, kind, full, _duration(evaluation, now)))
    return trials


def _full(rules: OptimizerRules, evaluation: ScopeState, full_size: int | None) -> bool | None:
    """Whether an evaluation is a full one, as the optimizer said it or as its rules know it; None if unknown."""
    if rules.full == ALWAYS_FULL:
        return True
    metric_key = str(evaluation.metadata.get("metric_key") or "")
    if metric_key in ("eval_full", "eval_minibatch"):
        return metric_key == "eval_full"
    if rules.full == FULL_IF_VALSET and full_size is not None and evaluation.total:
        return evaluation.total == full_size
    return None  # whether this was a full evaluation is not said


def _best(trials: list[Trial]) -> Trial | None:
    """The highest final score of a full (or not-known-minibatch) evaluation; the earliest on a tie."""
    best = None
    for trial in trials:
        if trial.score is None or trial.full is False:
            continue
        if best is None or trial.score > best.score:
            best = trial
    return best


def _phase(
    scope: ScopeState,
    rules: OptimizerRules,
    trials: list[Trial],
    nested: list[ScopeState],
    planned: int | None,
    current: Trial | None,
) -> str:
    if current is not None:
        index = trials.index(current) + (_missed(scope) or 0)
        if planned is not None and 0 < planned <= index:
            return "final evaluation"
        if index == 0 and rules.first_phase is not None:
            return rules.first_phase
        text = f"trial {current.number}"
        return text + " (minibatch)" if current.full is False else text
    running = [n for n in nested if n.running]
    if running:
        inner = running[-1].label
        return "bootstrapping demos" if rules_for(inner).bootstraps else f"running {inner}"
    if rules.own_phase is not None:
        return rules.own_phase
    if trials:
        return rules.between_trials
    if rules.before_trials is not None:
        own = minus(scope.usage, total([t.usage for t in trials] + [n.usage for n in nested]))
        working, idle = rules.before_trials
        return working if own.calls or own.in_flight else idle
    return "starting"


def _projection(
    scope: ScopeState,
    rules: OptimizerRules,
    trials: list[Trial],
    nested: list[ScopeState],
    planned: int | None,
    budget: int | None,
    metric_calls: int | None,
    now: float,
) -> tuple[float | None, float | None]:
    """Cost and seconds to finish at the rate since the first trial began; None when not projectable."""
    if scope.state == "done":
        return 0.0, 0.0
    if scope.state != "running" or not trials:
        return None, None
    missed = _missed(scope) or 0
    if scope.joined and (budget is not None or _missed(scope) is None):
        return None, None  # how much the run did before dspy-top attached is not known
    first = trials[0].scope.start
    known = [t for t in trials if t.scope.usage_known]  # a joined evaluation's calls are not known
    # The spend that scales with trials: the trials, bootstrapping between them (random search),
    # and the run's own calls where its rules say they grow with the trials.
    spend = [t.usage for t in known] + [n.usage for n in nested if n.start >= first]
    if rules.own_calls_scale:
        spend.append(minus(scope.usage, total([t.usage for t in trials] + [n.usage for n in nested])))
    spent = total(spend)
    if budget is not None:
        done, remaining = float(metric_calls or 0), float(max(0, budget - (metric_calls or 0)))
    elif planned:
        done = sum(t.fraction for t in trials)
        remaining = max(0.0, planned - missed - done)
    else:
        return None, None
    if done <= 0:
        return None, None
    paid = done if len(known) == len(trials) else sum(t.fraction for t in known)
    cost = _priced(spent, spent.cost_usd / paid * remaining) if paid > 0 else None
    return cost, max(0.0, now - first) / done * remaining


# --- small helpers -------------------------------------------------------------------------


def key_params(scope: ScopeState) -> tuple[tuple[str, Any], ...]:
    out: dict[str, Any] = {}
    for wire, shown in KEY_PARAMS:
        value = scope.arguments.get(wire, scope.params.get(wire))
        if value is None or shown in out:
            continue
        if wire == "minibatch" and "minibatch" not in scope.arguments:
            continue  # a default the optimizer may override (MIPROv2's auto mode does)
        out[shown] = value
    return tuple(out.items())


def _joined_at(scope: ScopeState) -> float | None:
    at = (scope.joined or {}).get("at")
    return float(at) if isinstance(at, (int, float)) else None


def _missed(scope: ScopeState) -> int | None:
    """Evaluations a joined run made before `dspy-top attach`: 0 for a run seen from its start."""
    if not scope.joined:
        return 0
    missed = scope.joined.get("missed")
    return int(missed) if isinstance(missed, int) and not isinstance(missed, bool) else None


def _label(scope: ScopeState) -> str:
    auto = scope.params.get("auto")
    return f"{scope.label} ({auto})" if isinstance(auto, str) else scope.label


def _duration(scope: ScopeState, now: float) -> float:
    end = scope.end if scope.end is not None else now
    return max(0.0, end - scope.start)


def _end_phase(scope: ScopeState) -> str | None:
    if scope.state == "done":
        return "done"
    if scope.state == "failed":
        return "failed"
    return None


def _priced(usage: Counters, value: float) -> float | None:
    # Nothing priced: the projection would read $0, which is not known.
    return None if usage.unpriced_calls and usage.cost_usd == 0 else value
