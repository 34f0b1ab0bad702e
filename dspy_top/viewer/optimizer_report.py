"""Optimizer runs for batch mode: the `optimizers` JSON list (docs/batch-json.md) and the text section."""

from __future__ import annotations

from typing import Any

from dspy_top.model import OptimizerRun, Snapshot
from dspy_top.model.optimizers import RunGroup, rows_of, trial_summary
from dspy_top.viewer import format as fmt

TEXT_TRIALS = 24  # newest trials listed per run in the text section


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def optimizer_json(run: OptimizerRun) -> dict[str, Any]:
    usage = run.usage
    return {
        "pid": run.pid, "id": run.id, "class": run.class_name, "label": run.label, "state": run.state,
        "parent": run.parent, "depth": run.depth, "phase": run.phase, "params": dict(run.params),
        "started_at": run.start, "ended_at": run.end, "elapsed_s": round(run.elapsed, 3),
        "trials_planned": run.planned, "trials_planned_how": run.planned_how,
        "current_trial": run.current.number if run.current is not None else None,
        "best_score": run.best_score, "best_trial": run.best.number if run.best is not None else None,
        "calls": usage.calls, "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
        "cost_usd": round(usage.cost_usd, 10), "cost_known": usage.cost_known, "tokens_known": usage.tokens_known,
        "trials_cost_usd": round(run.trial_usage.cost_usd, 10),
        "cost_to_finish_usd": _round(run.cost_to_finish, 10), "time_to_finish_s": _round(run.time_to_finish, 3),
        "metric_calls": run.metric_calls, "metric_budget": run.metric_budget, "error": run.error,
        "trials": [dict(trial_summary(trial)) for trial in run.trials],
    }


def optimizers_json(snapshot: Snapshot) -> list[dict[str, Any]]:
    return [optimizer_json(run) for run in snapshot.optimizers]


def optimizers_text(snapshot: Snapshot) -> list[str]:
    """The `-b` text section: one row per run (nested runs indented), then each run's newest trials."""
    if not snapshot.optimizers:
        return []
    lines = [f"{'OPTIMIZER':<36} {'STATE':<8} {'PHASE':<24} {'TRIAL':>7} {'BEST':>6} {'CALLS':>7} {'COST':>9}"
             "  TO FINISH"]
    for run in rows_of(snapshot.optimizers):
        if isinstance(run, RunGroup):
            name = ("  " * run.depth + f"{run.class_name} x{len(run.runs)}")[:36]
            lines.append(f"{name:<36} {'done':<8} {'bootstrapped demos':<24} {'-':>7} {'-':>6} "
                         f"{run.usage.calls:>7,} {fmt.cost(run.usage):>9}  -")
            continue
        name = ("  " * run.depth + run.label + (f" [pid {run.pid}]" if run.depth == 0 else ""))[:36]
        best = f"{run.best_score:.1f}" if run.best_score is not None else "-"
        finish = "-"
        if run.state == "running":
            cost = fmt.dollars(run.cost_to_finish) if run.cost_to_finish is not None else "?"
            clock = fmt.short_uptime(run.time_to_finish) if run.time_to_finish is not None else "?"
            finish = f"~{cost} {clock}"
        lines.append(f"{name:<36} {run.state:<8} {run.phase[:24]:<24} {run.trial_progress:>7} {best:>6} "
                     f"{run.usage.calls:>7,} {fmt.cost(run.usage):>9}  {finish}")
        if run.trials and run.class_name != "Evaluate":
            shown = run.trials[-TEXT_TRIALS:]
            cells = []
            for trial in shown:
                if trial.failed:
                    score = "failed"
                elif trial.score is not None:
                    score = f"{trial.score:.1f}" + ("*" if trial.best else "") + ("m" if trial.full is False else "")
                else:
                    score = f"{trial.running_score:.1f}…" if trial.running_score is not None else "…"
                cells.append(f"{trial.number}:{score}")
            more = f"({len(run.trials) - len(shown)} older) " if len(run.trials) > len(shown) else ""
            lines.append("  " * run.depth + f"  trials {more}" + " ".join(cells) + "   (* best, m minibatch)")
    return lines
