"""Optimizer runs and evaluations already under way at `dspy-top attach`: shown as runs from then on.

The threads' current frames show which `compile()` and `Evaluate.__call__` are running. Each
becomes a scope like the hooks would have opened at its start, with `joined` saying when
dspy-top joined it and how many of its evaluations it missed (MIPROv2 and random search
expose where they are; other optimizers: unknown). Evaluations and nested optimizers it
starts later belong to it: `Hooks.scope()` answers, for code running inside its frame, with
its scope, so their calls and progress are counted as usual. A joined evaluation's own
calls cannot be told apart (its workers copied DSPy's settings before dspy-top came), so its
usage stays unknown; its progress counts from the next example. `settle()`, called by the
attach watcher, ends a scope once its frame has left the stack.
"""

from __future__ import annotations

import inspect
import sys
import time
from typing import Any

from dspy_top.instrumentation import scopes as hooks_scopes
from dspy_top.instrumentation.call_context import Scope

_DATA = {"student", "trainset", "valset", "teacher", "program", "self"}
_NO_EVALUATIONS = ("BootstrapFewShot", "LabeledFewShot")  # optimizers that never call Evaluate


class JoinedRun:
    """One running compile or evaluation found at attach, and the frame that runs it."""

    __slots__ = ("scope_id", "kind", "frame", "thread_id", "scope", "info")

    def __init__(self, scope_id: str, kind: str, frame, thread_id: int, scope: Scope, info: dict) -> None:
        self.scope_id = scope_id
        self.kind = kind
        self.frame = frame  # held while it runs: its identity is how calls from inside it are recognised
        self.thread_id = thread_id
        self.scope = scope
        self.info = info


class JoinedRuns:
    """Finds the runs under way, answers `Hooks.scope()` inside them, ends them when their frames go."""

    def __init__(self, hooks, clock=time.time) -> None:
        self.hooks = hooks
        self.clock = clock
        self.runs: dict[int, JoinedRun] = {}  # id(frame) -> run (replaced whole, never mutated)
        self._lookup = None

    def join(self) -> list[dict[str, Any]]:
        """Open a scope for every compile and evaluation running now; what was joined (for the report)."""
        try:
            codes = _run_codes()
        except Exception:
            self.hooks.recorder.count_internal_error()
            return []
        at = self.clock()
        found: dict[int, JoinedRun] = {}
        me = sys._getframe()
        for thread_id, innermost in list(sys._current_frames().items()):
            stack = []
            frame = innermost
            while frame is not None:
                if frame is me:
                    stack = []
                    break
                stack.append(frame)
                frame = frame.f_back
            stack.reverse()  # outermost first: parents open before what runs inside them
            scope = Scope()
            for index, frame in enumerate(stack):
                kind = codes.get(frame.f_code)
                if kind is None:
                    continue
                try:
                    run = self._open(kind, frame, stack[index + 1 :], thread_id, scope, at, codes)
                except Exception:
                    self.hooks.recorder.count_internal_error()
                    continue
                if run is not None:
                    found[id(frame)] = run
                    scope = run.scope
        self.runs = found
        if found:
            self._install_lookup()
        return [{"id": run.scope_id, "kind": run.kind, **run.info} for run in found.values()]

    def _open(
        self, kind: str, frame, inner: list, thread_id: int, outer: Scope, at: float, codes: dict
    ) -> JoinedRun | None:
        local = frame.f_locals
        owner = local.get("self")
        if owner is None or id(owner) in outer.owners:
            return None  # a re-entry of a run already joined
        scope_id = f"{'eval' if kind == 'eval' else 'compile'}-{next(hooks_scopes._scope_ids)}"
        recorder = self.hooks.recorder
        joined: dict[str, Any] = {"at": at}
        if kind == "eval":
            signature = inspect.signature(inspect.unwrap(type(owner).__call__))
            arguments = {name: local[name] for name in list(signature.parameters)[1:] if name in local}
            info = hooks_scopes._evaluate_info(owner, signature, (), arguments, outer)
            info.update(_progress(inner))
            joined["usage"] = "unknown"  # its workers' calls carry no scope: see the module docstring
        else:
            signature = inspect.signature(inspect.unwrap(type(owner).compile))
            arguments = _passed(signature, local)
            info = hooks_scopes._compile_info(owner, (), arguments, outer)
            missed, trial = _missed_evaluations(type(owner).__name__, frame, inner, codes)
            joined.update(missed=missed, trial=trial)
        info["joined"] = joined
        recorder.scope_start(kind, scope_id, info)
        if kind == "eval":
            with recorder.lock:
                recorder.scope_counters.pop(scope_id, None)  # usage unknown, never shown as 0
        return JoinedRun(
            scope_id,
            kind,
            frame,
            thread_id,
            outer.push(scope_id, owner),
            {k: info.get(k) for k in ("class", "program", "total", "joined") if k in info},
        )

    # --- Hooks.scope() inside a joined run -----------------------------------------------

    def _install_lookup(self) -> None:
        hooks = self.hooks
        plain = type(hooks).scope
        runs = self

        def scope() -> Scope:
            found = plain(hooks)
            if found.ids or not runs.runs:
                return found
            run = runs.enclosing(sys._getframe(1))
            return run.scope if run is not None else found

        hooks.scope = scope
        self._lookup = scope

    def enclosing(self, frame) -> JoinedRun | None:
        """The innermost joined run whose frame is on this stack."""
        runs = self.runs
        while frame is not None:
            run = runs.get(id(frame))
            if run is not None and run.frame is frame:
                return run
            frame = frame.f_back
        return None

    # --- the watcher's side -----------------------------------------------------------------

    def settle(self) -> bool:
        """End the scopes whose frames have left their threads' stacks. True once none is left."""
        if not self.runs:
            self.close()
            return True
        frames = sys._current_frames()
        alive = {}
        for key, run in self.runs.items():
            frame = frames.get(run.thread_id)
            while frame is not None and frame is not run.frame:
                frame = frame.f_back
            if frame is not None:
                alive[key] = run
            else:
                self._end(run)
        self.runs = alive
        del frames
        if not alive:
            self.close()
            return True
        return False

    def _end(self, run: JoinedRun) -> None:
        recorder = self.hooks.recorder
        info: dict[str, Any] = {}
        state = recorder.scopes.get(run.scope_id) or {}
        if run.kind == "eval":
            done, total, score_sum = state.get("done"), state.get("total"), state.get("score_sum")
            # Evaluate's score is 100 * (sum of metric values) / examples, once every example is in.
            if done and total and done >= total and isinstance(score_sum, (int, float)):
                info["score"] = round(100 * score_sum / done, 2)
        run.frame = None
        try:
            recorder.scope_end(run.scope_id, info)
        except Exception:
            recorder.count_internal_error()

    def close(self) -> None:
        """Forget every frame and answer `Hooks.scope()` as before."""
        self.runs = {}
        if self._lookup is not None and self.hooks.__dict__.get("scope") is self._lookup:
            del self.hooks.scope
        self._lookup = None


# --- what is running ------------------------------------------------------------------------


def _run_codes() -> dict[Any, str]:
    """The code objects of `Evaluate.__call__` and of every optimizer's `compile` (DSPy's own, unwrapped)."""
    from dspy.evaluate.evaluate import Evaluate
    from dspy.teleprompt.teleprompt import Teleprompter

    codes = {inspect.unwrap(Evaluate.__dict__["__call__"]).__code__: "eval"}
    pending = [Teleprompter]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        compile_fn = cls.__dict__.get("compile")
        if compile_fn is not None and not inspect.iscoroutinefunction(compile_fn):
            codes.setdefault(getattr(inspect.unwrap(compile_fn), "__code__", None), "compile")
    codes.pop(None, None)
    return codes


def _passed(signature: inspect.Signature, local: dict) -> dict[str, Any]:
    """compile()'s arguments as the frame holds them, leaving out those still at their default."""
    out = {}
    for name, parameter in list(signature.parameters.items())[1:]:
        if name not in local or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        value = local[name]
        if name not in _DATA:
            try:
                if parameter.default is not parameter.empty and value == parameter.default:
                    continue
            except Exception:
                continue
        out[name] = value
    return out


def _progress(inner: list) -> dict[str, Any]:
    """An evaluation's examples done and metric sum so far, read from its executor's frame."""
    for frame in inner:
        if frame.f_code.co_name in ("_execute_parallel", "_execute_sequential"):
            results, unset = frame.f_locals.get("results"), frame.f_globals.get("_UNSET")
            if isinstance(results, list) and unset is not None:
                finished = [r for r in list(results) if r is not unset and r is not None]
                try:
                    return {"done": len(finished), "score_sum": float(sum(r[-1] for r in finished))}
                except Exception:
                    return {"done": len(finished)}
    return {}


def _missed_evaluations(name: str, frame, inner: list, codes: dict) -> tuple[int | None, int | None]:
    """(evaluations the run finished before the attach, the trial number it logs now); None when unknown."""
    try:
        if name == "MIPROv2":
            return _mipro_missed(frame, inner, codes)
        if name == "BootstrapFewShotWithRandomSearch":
            seed = frame.f_locals.get("seed")
            # Seeds run from -3; each seed bootstraps (a nested compile) then evaluates once.
            if isinstance(seed, int) and any(codes.get(f.f_code) for f in inner):
                return seed + 3, None
            return None, None
        if name in _NO_EVALUATIONS:
            return 0, None
    except Exception:
        pass
    return None, None


def _mipro_missed(compile_frame, inner: list, codes: dict) -> tuple[int | None, int | None]:
    """MIPROv2 evaluates its default program (optuna trial 0; its log's "Trial 1"), then once per
    trial (`trial_num` 2, 3, ...), plus in minibatch mode a full evaluation after each trial whose
    number is a multiple of `minibatch_full_eval_steps + 1` and after the last but one
    (mipro_optimizer_v2.py)."""
    by_name: dict[str, Any] = {}
    for frame in inner:
        by_name.setdefault(frame.f_code.co_name, frame)
    search = by_name.get("_optimize_prompt_parameters")
    if search is None:
        # Before the search: nothing evaluated yet; after it (still in compile): how many is not kept.
        return (None, None) if "best_program" in compile_frame.f_locals else (0, None)
    local = search.f_locals
    if "default_score" not in local:
        return 0, None  # the default program's evaluation has not finished
    minibatch, steps, planned = (
        local.get("minibatch"),
        local.get("minibatch_full_eval_steps"),
        local.get("adjusted_num_trials"),
    )

    def full_evaluations(first: int, last: int) -> int:
        if not minibatch or not isinstance(steps, int) or not isinstance(planned, int):
            return 0
        return sum(1 for t in range(first, last + 1) if t % (steps + 1) == 0 or t == planned - 1)

    objective = by_name.get("objective")
    if objective is None:  # between trials: every trial in the study is over
        study = local.get("study")
        trials = len(study.trials) if study is not None else 1
        return trials + full_evaluations(2, trials), None
    trial = objective.f_locals.get("trial_num")
    if not isinstance(trial, int):
        return None, None
    missed = trial - 1 + full_evaluations(2, trial - 1)  # the default program's, and each earlier trial's
    below = inner[inner.index(objective) + 1 :]
    full = by_name.get("_perform_full_evaluation")
    if full is not None:
        missed += 1  # this trial's own evaluation is over
        if (
            not any(codes.get(f.f_code) == "eval" for f in inner[inner.index(full) + 1 :])
            and "full_eval_score" in full.f_locals
        ):
            missed += 1
    elif not any(codes.get(f.f_code) == "eval" for f in below) and "score" in objective.f_locals:
        missed += 1
    return missed, trial
