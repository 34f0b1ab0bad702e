"""Optimizer runs derived from scopes: trials, phase, best score, spend and a projection to finish.

A pure derivation over one process's `ScopeState`s (see docs/protocol.md, "Scopes"). What the
wire does not say stays None (unknown) rather than guessed; `describe_planned` says how each
known trial count was found.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from dspy_top.model.counters import EMPTY, Counters, total
from dspy_top.model.scopes import ScopeState

EVALUATE = "Evaluate"  # the class shown for a `dspy.Evaluate` run outside any optimizer
BOOTSTRAPPERS = ("BootstrapFewShot", "LabeledFewShot")  # optimizers that never call Evaluate

# Compile parameters worth a glance, in display order: (wire name, shown name). `arguments`
# (compile keyword arguments) override `params` (the optimizer's attributes).
KEY_PARAMS = (
    ("auto", "auto"), ("num_trials", "num_trials"), ("num_candidates", "num_candidates"),
    ("num_candidate_sets", "num_candidate_programs"), ("max_metric_calls", "max_metric_calls"),
    ("max_full_evals", "max_full_evals"), ("num_threads", "num_threads"),
    ("max_bootstrapped_demos", "max_bootstrapped_demos"), ("max_num_samples", "max_bootstrapped_demos"),
    ("max_labeled_demos", "max_labeled_demos"), ("k", "k"), ("minibatch", "minibatch"),
    ("minibatch_size", "minibatch_size"), ("reflection_minibatch_size", "reflection_minibatch_size"),
    ("stop_at_score", "stop_at_score"),
)

# MIPROv2's auto settings and trial formula, as DSPy 3.x defines them (mipro_optimizer_v2.py):
# trials = int(max(2 * vars * log2(n), 1.5 * n)) with vars = predictors (x2 with demos); it
# evaluates on min(valset, val_size) examples and uses minibatches when that is over 50.
MIPRO_AUTO = {"light": (6, 100), "medium": (12, 300), "heavy": (18, 1000)}
MIPRO_MIN_MINIBATCH = 50


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
        return self.planned - 1 + (0 if self.class_name == "MIPROv2" else 1)

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
        return _minus(self.usage, self.trial_usage)


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
        if root is not None and run.depth > 0 and run.class_name in BOOTSTRAPPERS and run.state != "running":
            key = f"{root.key}|{run.class_name}"
            if key not in groups:
                groups[key] = []
                out.append(RunGroup(key, run.class_name, ()))
            groups[key].append(run)
            continue
        out.append(run)
    return [RunGroup(r.key, r.class_name, tuple(groups[r.key])) if isinstance(r, RunGroup) else r for r in out]


def derive(scopes: Iterable[ScopeState], now: float) -> tuple[OptimizerRun, ...]:
    """Every optimizer run of one or more processes, parents before their nested runs."""
    by_process: dict[str, list[ScopeState]] = {}
    for scope in scopes:
        by_process.setdefault(scope.process, []).append(scope)
    runs: list[OptimizerRun] = []
    for process_scopes in by_process.values():
        runs.extend(_derive_process(process_scopes, now))
    return tuple(runs)


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
    trial = Trial(scope, 1, "eval", True, _duration(scope, now))
    best = trial if trial.score is not None else None
    if best is not None:
        trial = Trial(scope, 1, "eval", True, trial.duration, best=True)
        best = trial
    cost_to_finish = time_to_finish = None
    if not scope.running:
        cost_to_finish, time_to_finish = (0.0, 0.0) if scope.state == "done" else (None, None)
    elif scope.done and scope.total:
        remaining = max(0, scope.total - scope.done)
        cost_to_finish = _priced(scope.usage, scope.usage.cost_usd / scope.done * remaining)
        time_to_finish = (now - scope.start) / scope.done * remaining
    params = tuple((k, v) for k, v in (("num_threads", scope.num_threads), ("examples", scope.total or None))
                   if v is not None)
    label = f"{EVALUATE} ({scope.label})" if scope.label and scope.label != EVALUATE else EVALUATE
    return OptimizerRun(
        process=scope.process, pid=scope.pid, id=scope.id, class_name=EVALUATE, label=label, state=scope.state,
        parent=None, depth=depth, params=params, start=scope.start, end=scope.end, elapsed=_duration(scope, now),
        phase=_end_phase(scope) or "evaluating", trials=(trial,), planned=1, planned_how="a single evaluation",
        current=trial if scope.running else None, best=best, usage=scope.usage, trial_usage=scope.usage,
        cost_to_finish=cost_to_finish, time_to_finish=time_to_finish, error=scope.error,
    )


def _compile_run(scope: ScopeState, kids: list[ScopeState], now: float, depth: int) -> OptimizerRun:
    name = scope.label
    evals = [k for k in kids if k.kind == "eval"]
    nested = [k for k in kids if k.kind == "compile"]
    trials = _trials(scope, evals, now)
    best = _best(name, trials)
    if best is not None:
        trials = [Trial(t.scope, t.number, t.kind, t.full, t.duration, best=t is best) for t in trials]
        best = next(t for t in trials if t.best)
    planned, how = planned_trials(scope)
    budget = _int(_param(scope, "max_metric_calls")) if name == "GEPA" else None
    metric_calls = sum(t.scope.done for t in trials) if name == "GEPA" else None
    current = next((t for t in reversed(trials) if t.scope.running), None)
    trial_usage = total(t.usage for t in trials)
    run = dict(
        process=scope.process, pid=scope.pid, id=scope.id, class_name=name, label=_label(scope),
        state=scope.state, parent=scope.parent, depth=depth, params=key_params(scope), start=scope.start,
        end=scope.end, elapsed=_duration(scope, now), trials=tuple(trials), planned=planned, planned_how=how,
        current=current, best=best, usage=scope.usage, trial_usage=trial_usage, metric_calls=metric_calls,
        metric_budget=budget, error=scope.error, children=tuple(k.id for k in nested),
    )
    phase = _end_phase(scope) or _phase(scope, trials, nested, planned, current)
    cost, time_left = _projection(scope, trials, nested, planned, budget, metric_calls, now)
    return OptimizerRun(**run, phase=phase, cost_to_finish=cost, time_to_finish=time_left)


def _trials(scope: ScopeState, evals: list[ScopeState], now: float) -> list[Trial]:
    name = scope.label
    restricted = "restrict" in scope.arguments
    full_size = scope.valset if scope.valset is not None else scope.trainset
    trials = []
    for index, evaluation in enumerate(evals):
        metric_key = str(evaluation.metadata.get("metric_key") or "")
        full: bool | None
        if metric_key in ("eval_full", "eval_minibatch"):
            full = metric_key == "eval_full"
        elif name == "GEPA" and full_size is not None and evaluation.total:
            full = evaluation.total == full_size  # GEPA scores candidates on the valset, reflects on minibatches
        else:
            full = None  # another optimizer: whether this was its full evaluation is not said
        if name == "BootstrapFewShotWithRandomSearch":
            full = True  # every candidate is scored on the whole valset
        kind = "full" if full else "minibatch" if full is False else "eval"
        number = index + 1
        if name == "MIPROv2":
            number = index
            if index == 0:
                kind, full = "baseline", True
        elif name == "BootstrapFewShotWithRandomSearch" and not restricted:
            # Seeds -3, -2, -1 come first: zero-shot, labeled demos only, unshuffled bootstrap.
            kind = ("zero-shot", "labeled", "unshuffled")[index] if index < 3 else "bootstrapped"
        trials.append(Trial(evaluation, number, kind, full, _duration(evaluation, now)))
    return trials


def _best(name: str, trials: list[Trial]) -> Trial | None:
    """The highest final score of a full (or not-known-minibatch) evaluation; the earliest on a tie."""
    best = None
    for trial in trials:
        if trial.score is None or trial.full is False:
            continue
        if best is None or trial.score > best.score:
            best = trial
    return best


def planned_trials(scope: ScopeState) -> tuple[int | None, str | None]:
    """How many evaluations the compile will run in all, and how that is known; (None, None) when unknown."""
    name = scope.label
    if name in BOOTSTRAPPERS:
        return 0, f"{name} makes no evaluations"
    if name == "BootstrapFewShotWithRandomSearch":
        sets = _int(scope.params.get("num_candidate_sets"))
        if sets is None or "restrict" in scope.arguments:
            return None, None
        return sets + 3, "num_candidate_programs + 3 (zero-shot, labeled, unshuffled)"
    if name == "MIPROv2":
        return _mipro_planned(scope)
    return None, None


def _mipro_planned(scope: ScopeState) -> tuple[int | None, str | None]:
    steps = _int(scope.arguments.get("minibatch_full_eval_steps")) or 5
    auto = scope.params.get("auto")
    valset = scope.valset
    if valset is None and scope.trainset is not None:
        valset = min(1000, max(1, int(scope.trainset * 0.8)))  # MIPROv2 splits the trainset itself
    if auto is None:
        trials = _int(scope.arguments.get("num_trials"))
        if trials is None:
            return None, None
        minibatch = bool(scope.arguments.get("minibatch", True))
        how = "num_trials"
    else:
        settings = MIPRO_AUTO.get(str(auto))
        demos = _param(scope, "max_bootstrapped_demos"), _param(scope, "max_labeled_demos")
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


def _phase(scope: ScopeState, trials: list[Trial], nested: list[ScopeState], planned: int | None,
           current: Trial | None) -> str:
    name = scope.label
    if current is not None:
        index = trials.index(current)
        if planned is not None and 0 < planned <= index:
            return "final evaluation"
        if name == "MIPROv2" and index == 0:
            return "baseline evaluation"
        text = f"trial {current.number}"
        return text + " (minibatch)" if current.full is False else text
    running = [n for n in nested if n.running]
    if running:
        inner = running[-1].label
        return "bootstrapping demos" if inner in BOOTSTRAPPERS else f"running {inner}"
    if name == "BootstrapFewShot":
        return "bootstrapping demos"
    if name == "LabeledFewShot":
        return "choosing labeled demos"
    own = _minus(scope.usage, total([t.usage for t in trials] + [n.usage for n in nested]))
    if name == "MIPROv2" and not trials:
        return "proposing instructions" if own.calls or own.in_flight else "preparing"
    if name == "GEPA" and trials:
        return "reflecting"
    return "between trials" if trials else "starting"


def _projection(scope: ScopeState, trials: list[Trial], nested: list[ScopeState], planned: int | None,
                budget: int | None, metric_calls: int | None, now: float) -> tuple[float | None, float | None]:
    """Cost and seconds to finish at the rate since the first trial began; None when not projectable."""
    if scope.state == "done":
        return 0.0, 0.0
    if scope.state != "running" or not trials:
        return None, None
    first = trials[0].scope.start
    # The spend that scales with trials: the trials, bootstrapping between them (random search),
    # and the run's own calls, except MIPROv2's, which propose instructions before any trial.
    spend = [t.usage for t in trials] + [n.usage for n in nested if n.start >= first]
    if scope.label != "MIPROv2":
        spend.append(_minus(scope.usage, total([t.usage for t in trials] + [n.usage for n in nested])))
    spent = total(spend)
    if budget is not None:
        done, remaining = float(metric_calls or 0), float(max(0, budget - (metric_calls or 0)))
    elif planned:
        done = sum(t.fraction for t in trials)
        remaining = max(0.0, planned - done)
    else:
        return None, None
    if done <= 0:
        return None, None
    return _priced(spent, spent.cost_usd / done * remaining), max(0.0, now - first) / done * remaining


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


def _label(scope: ScopeState) -> str:
    auto = scope.params.get("auto")
    return f"{scope.label} ({auto})" if isinstance(auto, str) else scope.label


def _param(scope: ScopeState, name: str) -> Any:
    value = scope.arguments.get(name)
    return value if value is not None else scope.params.get(name)


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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


def _minus(whole: Counters, part: Counters) -> Counters:
    """What `whole` holds beyond `part` (counts only; histograms are not subtracted)."""
    if part is EMPTY:
        return whole
    return Counters(
        calls=max(0, whole.calls - part.calls), errors=max(0, whole.errors - part.errors),
        retries=max(0, whole.retries - part.retries), cache_hits=max(0, whole.cache_hits - part.cache_hits),
        prompt_tokens=max(0, whole.prompt_tokens - part.prompt_tokens),
        completion_tokens=max(0, whole.completion_tokens - part.completion_tokens),
        cached_tokens=max(0, whole.cached_tokens - part.cached_tokens),
        reasoning_tokens=max(0, whole.reasoning_tokens - part.reasoning_tokens),
        cost_usd=max(0.0, whole.cost_usd - part.cost_usd),
        unpriced_calls=max(0, whole.unpriced_calls - part.unpriced_calls),
        unmetered_calls=max(0, whole.unmetered_calls - part.unmetered_calls),
        cost_saved_usd=max(0.0, whole.cost_saved_usd - part.cost_saved_usd),
        latency_s=max(0.0, whole.latency_s - part.latency_s), in_flight=max(0, whole.in_flight - part.in_flight),
    )


def optimizer_line(runs: Iterable[OptimizerRun], now: float) -> str | None:
    """The header's one line about the optimizer (or evaluation) running now, or None."""
    running = [r for r in runs if r.state == "running" and r.depth == 0]
    if not running:
        return None
    compiles = [r for r in running if r.class_name != EVALUATE]
    run = min(compiles or running, key=lambda r: r.start)
    parts = [f"{run.label} {run.phase}" if run.class_name != EVALUATE else run.label]
    if run.planned and run.class_name != EVALUATE and run.current is not None:
        parts[0] = f"{run.label} trial {run.trial_progress}"
        if run.phase in ("final evaluation", "baseline evaluation"):
            parts[0] = f"{run.label} {run.phase}"
    parts.append(_clock(run.elapsed))
    if run.best_score is not None and run.class_name != EVALUATE:
        parts.append(f"best {run.best_score:.1f}")
    # The newest running evaluation anywhere in view, this run's or another's.
    evaluations = [t for r in running for t in r.trials if t.scope.running]
    if evaluations:
        latest = max(evaluations, key=lambda t: t.scope.start).scope
        text = f"eval {latest.done}/{latest.total}" if latest.total else f"eval {latest.done}"
        score = latest.score_so_far
        if score is not None:
            text += f" · {score:.1f}%"
        if latest.total:
            filled = round(8 * latest.done / latest.total)
            text += " " + "▓" * filled + "░" * (8 - filled)
        parts.append(text)
    if run.cost_to_finish is not None:
        parts.append(f"~{_money(run.cost_to_finish)} to finish")
    others = len(running) - 1
    if others > 0:
        parts.append(f"+{others} more running")
    return " · ".join(parts)


def _money(value: float) -> str:
    return f"${value:.2f}" if value >= 0.01 or value == 0 else f"${value:.4f}"


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def trial_summary(trial: Trial) -> Mapping[str, Any]:
    """One trial for the batch JSON (docs/batch-json.md)."""
    usage = trial.usage
    return {
        "number": trial.number, "id": trial.id, "kind": trial.kind, "full": trial.full, "state": trial.state,
        "score": trial.score, "running_score": trial.running_score if trial.scope.running else None,
        "done": trial.scope.done, "total": trial.scope.total, "calls": usage.calls,
        "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
        "cost_usd": round(usage.cost_usd, 10), "cost_known": usage.cost_known, "tokens_known": usage.tokens_known,
        "cache_hits": usage.cache_hits,
        "duration_s": round(trial.duration, 3), "best": trial.best, "error": trial.scope.error,
    }
