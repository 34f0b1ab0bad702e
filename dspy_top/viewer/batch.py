"""`dspy-top -b`: snapshots without a TUI, as text like `top -b` or as JSON lines (docs/batch-json.md)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from dspy_top.model import Fleet, Snapshot
from dspy_top.model.budget import BudgetAlarm
from dspy_top.model.tree import ModuleNode
from dspy_top.pricing import Price
from dspy_top.viewer import format as fmt
from dspy_top.viewer.collector import Collector
from dspy_top.viewer.optimizer_report import optimizers_json, optimizers_text

SCHEMA_VERSION = 1
BUDGET_REACHED = 3  # exit status: the viewer's --budget was reached (warnings went to stderr)


def snapshot_json(snapshot: Snapshot, iteration: int = 1) -> dict[str, Any]:
    """The documented JSON object for one snapshot (see docs/batch-json.md)."""
    totals = snapshot.totals
    leaves = list(_leaves(snapshot.modules))
    total_cost = totals.cost_usd
    return {
        "schema": SCHEMA_VERSION,
        "at": snapshot.at,
        "iteration": iteration,
        "processes": [
            {
                "pid": p.pid, "command": p.command, "state": p.state, "status": p.status,
                "socket": p.key, "started_at": p.started_at, "uptime_s": round(p.uptime, 3),
                "mechanism": p.mechanism, "calls": p.totals.calls, "cost_usd": round(p.totals.cost_usd, 10),
                "dropped_events": p.dropped,
            }
            for p in snapshot.processes
        ],
        "totals": {
            **totals.to_json(),
            "tokens_per_sec": round(snapshot.tokens_per_sec, 3),
            "tokens_per_sec_avg": round(snapshot.tokens_per_sec_avg, 3),
            "cost_per_min": round(snapshot.cost_per_min, 10),
            "cache_hit_rate": totals.cache_hit_rate,
            "dropped_events": snapshot.dropped,
            "uptime_s": round(snapshot.uptime, 3),
        },
        "modules": [
            {
                "path": node.path, "class": node.class_name, **node.counters.to_json(),
                "tokens_per_sec": round(node.tokens_per_sec, 3),
                "cost_share": (node.counters.cost_usd / total_cost) if total_cost else None,
            }
            for node in leaves
        ],
        "models": [{"model": row.model, **row.counters.to_json(), "price_override": row.price_override}
                   for row in snapshot.models],
        "scopes": [
            {
                "pid": s.pid, "id": s.id, "kind": s.kind, "state": s.state, "label": s.label,
                "done": s.done, "total": s.total, "score": s.score_so_far, "calls": s.usage.calls,
                "cost_usd": round(s.usage.cost_usd, 10),
            }
            for s in snapshot.scopes
        ],
        "rates": rates_json(snapshot),
        "budget": budget_json(snapshot),
        "optimizers": optimizers_json(snapshot),
    }


def rates_json(snapshot: Snapshot) -> dict[str, Any] | None:
    """Burn rate over the recent window and overall, the hourly pace, the running evaluation's projection."""
    burn = snapshot.burn
    if burn is None:
        return None
    projection = burn.evaluation
    return {
        "window_s": burn.window,
        "cost_per_min": round(burn.cost_per_min, 10),
        "cost_per_min_avg": round(burn.cost_per_min_avg, 10),
        "cost_per_hour": round(burn.cost_per_hour, 10),
        "tokens_per_sec": round(burn.tokens_per_sec, 3),
        "tokens_per_sec_avg": round(burn.tokens_per_sec_avg, 3),
        "eval_projection": None if projection is None else {
            "pid": projection.pid, "id": projection.id, "label": projection.label, "done": projection.done,
            "total": projection.total, "cost_usd": round(projection.spent_usd, 10),
            "cost_known": projection.cost_known,
            "projected_usd": None if projection.projected_usd is None else round(projection.projected_usd, 10),
        },
    }


def budget_json(snapshot: Snapshot) -> dict[str, Any]:
    """The viewer's `--budget` (null without one) and each job's own budget guard and alerts."""
    viewer = snapshot.budget
    return {
        "viewer": None if viewer is None else {
            "usd": viewer.usd, "spent_usd": round(viewer.spent, 10), "fraction": round(viewer.fraction, 6),
            "level": viewer.level, "cost_known": viewer.cost_known,
        },
        "jobs": [
            {
                "pid": job.pid, "on_exceed": job.on_exceed,
                "limits": [{"scope": limit.scope, "name": limit.name, "usd": limit.usd,
                            "spent_usd": round(limit.spent, 10), "fraction": round(limit.fraction, 6)}
                           for limit in job.limits],
                "alerts": [{"level": int(alert.level) if alert.level.isdigit() else alert.level, "scope": alert.scope, "name": alert.name,
                            "spent_usd": alert.spent_usd, "budget_usd": alert.budget_usd, "action": alert.action,
                            "message": alert.message} for alert in job.alerts],
            }
            for job in snapshot.job_budgets
        ],
    }


def _leaves(nodes: tuple[ModuleNode, ...]):
    """Module paths that made calls, with their own (not subtree) counters, in path order."""
    stack = sorted(nodes, key=lambda n: n.path, reverse=True)
    while stack:
        node = stack.pop()
        if node.own is not None:
            yield ModuleNode(node.path, node.name, node.depth, node.class_name, node.own, node.own,
                             node.tokens_per_sec - sum(c.tokens_per_sec for c in node.children), node.active, ())
        stack.extend(sorted(node.children, key=lambda n: n.path, reverse=True))


def snapshot_text(snapshot: Snapshot) -> str:
    """One `top -b` style frame."""
    t = snapshot.totals
    lines = [
        f"dspy-top - {fmt.clock(snapshot.at, millis=False)} up {fmt.uptime(snapshot.uptime)}, "
        f"{len(snapshot.in_view)} process{'es' if len(snapshot.in_view) != 1 else ''} ({snapshot.live} live), "
        f"{t.calls:,} calls ({t.in_flight} in flight)",
        f"Tokens: {fmt.token_count(t, t.prompt_tokens)} in, {fmt.token_count(t, t.completion_tokens)} out, "
        f"{fmt.rate(snapshot.tokens_per_sec)} tok/s now, {fmt.rate(snapshot.tokens_per_sec_avg)} avg"
        + (f" ({t.unmetered_calls} calls without token counts)" if t.unmetered_calls else ""),
        f"Cost: {fmt.cost(t)}" + (f" ({t.unpriced_calls} unpriced calls)" if t.unpriced_calls else "")
        + f", {fmt.dollars(snapshot.cost_per_min)}/min, cache {fmt.percent(t.cache_hit_rate)} "
        f"({t.cache_hits:,} hits, saved {fmt.dollars(t.cost_saved_usd)})",
        f"Errors: {t.errors:,}, retries: {t.retries:,}, dropped events: {snapshot.dropped:,}, "
        f"p50 {fmt.seconds(t.p50)}, p95 {fmt.seconds(t.p95)}",
    ]
    if snapshot.burn is not None:
        lines.append(f"Burn: {fmt.burn(snapshot.burn)}")
        if snapshot.burn.evaluation is not None:
            lines.append(f"Projection: {fmt.projection(snapshot.burn.evaluation)}")
    if snapshot.budget is not None:
        lines.append(f"Budget: {fmt.viewer_budget(snapshot.budget)}")
    for job in snapshot.job_budgets:
        lines.append(f"Job budget: {fmt.job_budget(job)}")
    if snapshot.progress:
        lines.append(f"Optimizer: {snapshot.progress}")
    lines.append("")
    lines.append(f"{'PID':>7}  {'STATE':<8} {'UPTIME':>9} {'CALLS':>7} {'COST':>9}  COMMAND / STATUS")
    for p in snapshot.processes:
        note = p.command if p.state == "running" else f"{p.command}  [{p.status}]".strip()
        lines.append(f"{p.pid:>7}  {p.state:<8} {fmt.uptime(p.uptime):>9} {p.totals.calls:>7,} "
                     f"{fmt.cost(p.totals):>9}  {note}")
    lines.append("")
    lines.append(f"{'MODULE':<40} {'CALLS':>7} {'INFL':>4} {'IN TOK':>8} {'OUT TOK':>8} {'TOK/S':>7} "
                 f"{'COST':>9} {'P50':>6} {'P95':>6} {'ERR':>4} {'HITS':>5} {'SAVED':>9}")
    for node in _leaves(snapshot.modules):
        c = node.counters
        lines.append(f"{node.path[:40]:<40} {c.calls:>7,} {c.in_flight:>4} {fmt.token_count(c, c.prompt_tokens):>8} "
                     f"{fmt.token_count(c, c.completion_tokens):>8} {fmt.rate(node.tokens_per_sec):>7} {fmt.cost(c):>9} "
                     f"{fmt.seconds(c.p50):>6} {fmt.seconds(c.p95):>6} {c.errors:>4} {c.cache_hits:>5} "
                     f"{fmt.dollars(c.cost_saved_usd):>9}")
    lines.append("")
    lines.append(f"{'MODEL':<40} {'CALLS':>7} {'IN TOK':>8} {'OUT TOK':>8} {'COST':>9} {'HITS':>5}")
    for row in snapshot.models:
        c = row.counters
        lines.append(f"{row.model[:40]:<40} {c.calls:>7,} {fmt.tokens(c.prompt_tokens):>8} "
                     f"{fmt.tokens(c.completion_tokens):>8} {fmt.cost(c):>9} {c.cache_hits:>5}"
                     + ("  * your price" if row.price_override else ""))
    section = optimizers_text(snapshot)
    if section:
        lines += ["", *section]
    return "\n".join(lines) + "\n"


def run(
    *,
    pids: list[int] | None = None,
    sockets: list[Path] | None = None,
    iterations: int | None = None,
    delay: float = 1.0,
    as_json: bool = False,
    out: TextIO | None = None,
    directory: Path | None = None,
    prices: dict[str, Price] | None = None,
    budget_usd: float | None = None,
) -> int:
    """Print snapshots until `iterations` are done (forever when None).

    0 if anything was attached, else 1; 3 when the `budget_usd` was reached (BUDGET_REACHED).
    """
    out = out or sys.stdout
    fleet = Fleet(prices=prices, budget_usd=budget_usd)
    alarm = BudgetAlarm()
    collector = Collector(fleet, directory=directory, pids=pids, sockets=sockets).start()
    attached = False
    reported: dict[str, str] = {}
    try:
        collector.wait_settled(timeout=4.0)
        done = 0
        while True:
            with fleet.lock:
                snapshot = fleet.snapshot(history_limit=0)
            attached = attached or snapshot.attached
            if not snapshot.processes and done == 0:
                print(f"dspy-top: no instrumented DSPy process found in {collector.runtime_dir}; "
                      "start one with `dspy-top run -- python job.py` or call dspy_top.instrument()",
                      file=sys.stderr)
            for p in snapshot.problems:
                if reported.get(p.key) != p.status:
                    reported[p.key] = p.status
                    print(f"dspy-top: pid {p.pid or '?'}: {p.status}", file=sys.stderr)
            for level in alarm.crossed(snapshot.budget):
                print(f"dspy-top: {snapshot.budget.message(level)}", file=sys.stderr, flush=True)
            done += 1
            if as_json:
                out.write(json.dumps(snapshot_json(snapshot, done), separators=(",", ":")) + "\n")
            else:
                if done > 1:
                    out.write("\n")
                out.write(snapshot_text(snapshot))
            out.flush()
            if iterations is not None and done >= iterations:
                break
            time.sleep(delay)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        pass
    finally:
        collector.stop()
    if not attached:
        return 1
    return BUDGET_REACHED if 100 in alarm.fired else 0
