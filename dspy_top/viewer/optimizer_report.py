"""Optimizer runs as text and JSON: the header's one line, batch mode's `optimizers` list and text section.

The JSON is documented in docs/batch-json.md; the model (`dspy_top.model.optimizers`) only derives.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dspy_top.model import OptimizerRun, Snapshot, Trial
from dspy_top.model.optimizers import EVALUATE, RunGroup, rows_of
from dspy_top.viewer import format as fmt
from dspy_top.viewer.terminal import inert

TEXT_TRIALS = 24  # newest trials listed per run in the text section


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def optimizer_json(run: OptimizerRun) -> dict[str, Any]:
    return {
        "pid": run.pid,
        "id": run.id,
        "class": run.class_name,
        "label": run.label,
        "state": run.state,
        "parent": run.parent,
        "depth": run.depth,
        "phase": run.phase,
        "params": dict(run.params),
        "started_at": run.start,
        "ended_at": run.end,
        "elapsed_s": round(run.elapsed, 3),
        "trials_planned": run.planned,
        "trials_planned_how": run.planned_how,
        "current_trial": run.current.number if run.current is not None else None,
        "best_score": run.best_score,
        "best_trial": run.best.number if run.best is not None else None,
        **_usage_json(run),
        "trials_cost_usd": round(run.trial_usage.cost_usd, 10),
        "cost_to_finish_usd": _round(run.cost_to_finish, 10),
        "time_to_finish_s": _round(run.time_to_finish, 3),
        "metric_calls": run.metric_calls,
        "metric_budget": run.metric_budget,
        "error": run.error,
        "joined_at": run.joined_at,
        "missed_trials": run.missed_trials if run.joined else 0,
        "trials": [dict(trial_summary(trial)) for trial in run.trials],
    }


def _usage_json(run: OptimizerRun) -> dict[str, Any]:
    usage, known = run.usage, run.usage_known
    return {
        "calls": usage.calls if known else None,
        "prompt_tokens": usage.prompt_tokens if known else None,
        "completion_tokens": usage.completion_tokens if known else None,
        "cost_usd": round(usage.cost_usd, 10) if known else None,
        "cost_known": usage.cost_known and known,
        "tokens_known": usage.tokens_known and known,
    }


def trial_summary(trial: Trial) -> Mapping[str, Any]:
    """One trial for the batch JSON (docs/batch-json.md)."""
    usage = trial.usage
    known = trial.scope.usage_known  # a joined evaluation's calls are unknown, never 0
    return {
        "number": trial.number,
        "id": trial.id,
        "kind": trial.kind,
        "full": trial.full,
        "state": trial.state,
        "score": trial.score,
        "running_score": trial.running_score if trial.scope.running else None,
        "done": trial.scope.done,
        "total": trial.scope.total,
        "calls": usage.calls if known else None,
        "prompt_tokens": usage.prompt_tokens if known else None,
        "completion_tokens": usage.completion_tokens if known else None,
        "cost_usd": round(usage.cost_usd, 10) if known else None,
        "cost_known": usage.cost_known and known,
        "tokens_known": usage.tokens_known and known,
        "cache_hits": usage.cache_hits if known else None,
        "duration_s": round(trial.duration, 3),
        "best": trial.best,
        "error": trial.scope.error,
        "joined": trial.scope.joined is not None,
    }


def optimizers_json(snapshot: Snapshot) -> list[dict[str, Any]]:
    return [optimizer_json(run) for run in snapshot.optimizers]


def optimizers_text(snapshot: Snapshot) -> list[str]:
    """The `-b` text section: one row per run (nested runs indented), then each run's newest trials."""
    if not snapshot.optimizers:
        return []
    lines = [
        f"{'OPTIMIZER':<36} {'STATE':<8} {'PHASE':<24} {'TRIAL':>7} {'BEST':>6} {'CALLS':>7} {'COST':>9}  TO FINISH"
    ]
    for run in rows_of(snapshot.optimizers):
        if isinstance(run, RunGroup):
            name = ("  " * run.depth + f"{inert(run.class_name)} x{len(run.runs)}")[:36]
            lines.append(
                f"{name:<36} {'done':<8} {'bootstrapped demos':<24} {'-':>7} {'-':>6} "
                f"{run.usage.calls:>7,} {fmt.cost(run.usage):>9}  -"
            )
            continue
        name = ("  " * run.depth + inert(run.label) + (f" [pid {run.pid}]" if run.depth == 0 else ""))[:36]
        best = fmt.score(run.best_score)
        finish = "-"
        if run.state == "running":
            cost = fmt.dollars(run.cost_to_finish) if run.cost_to_finish is not None else "?"
            clock = fmt.short_uptime(run.time_to_finish) if run.time_to_finish is not None else "?"
            finish = f"~{cost} {clock}"
        state, phase = inert(run.state)[:8], inert(run.phase)[:24]
        calls, cost = (f"{run.usage.calls:,}", fmt.cost(run.usage)) if run.usage_known else ("?", "?")
        lines.append(
            f"{name:<36} {state:<8} {phase:<24} {run.trial_progress:>7} {best:>6} {calls:>7} {cost:>9}  {finish}"
        )
        if run.trials and run.class_name != EVALUATE:
            shown = run.trials[-TEXT_TRIALS:]
            cells = []
            for trial in shown:
                if trial.failed:
                    score = "failed"
                elif trial.score is not None:
                    score = fmt.score(trial.score) + ("*" if trial.best else "") + ("m" if trial.full is False else "")
                else:
                    score = f"{fmt.score(trial.running_score)}…" if trial.running_score is not None else "…"
                cells.append(f"{trial.number}:{score}")
            more = f"({len(run.trials) - len(shown)} older) " if len(run.trials) > len(shown) else ""
            lines.append("  " * run.depth + f"  trials {more}" + " ".join(cells) + "   (* best, m minibatch)")
        if run.joined:
            lines.append("  " * run.depth + f"  {joined_note(run)}")
    return lines


def joined_note(run: OptimizerRun) -> str:
    """What a run under way at `dspy-top attach` was not seen doing."""
    at = fmt.clock(run.joined_at, millis=False)
    if run.class_name == EVALUATE:
        return f"joined at {at}, mid-evaluation: its calls are in the totals, not in this run"
    first = run.trials[0].number if run.trials else None
    if run.missed_trials is None:
        return f"joined at {at}: earlier trials were not seen (how many is unknown); counts are from then on"
    if run.missed_trials == 0:
        return f"joined at {at}, before its first trial: every trial is seen"
    shown = "" if first is None else f"; trials from {first} on are"
    return (
        f"joined at {at}: its first {run.missed_trials} evaluation{'s' if run.missed_trials != 1 else ''} "
        f"(before the attach) were not seen{shown}"
    )


def optimizer_line(runs: Iterable[OptimizerRun], now: float) -> str | None:
    """The header's (and batch text's) one line about the optimizer (or evaluation) running now, or None."""
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
        parts.append(f"best {fmt.score(run.best_score)}")
    # The newest running evaluation anywhere in view, this run's or another's.
    evaluations = [t for r in running for t in r.trials if t.scope.running]
    if evaluations:
        latest = max(evaluations, key=lambda t: t.scope.start).scope
        text = f"eval {latest.done}/{latest.total}" if latest.total else f"eval {latest.done}"
        score = latest.score_so_far
        if score is not None:
            text += f" · {fmt.score(score)}"
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
