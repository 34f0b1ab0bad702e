"""`dspy-top -b`: snapshots without a TUI, as text like `top -b` or as JSON lines (docs/batch-json.md)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from dspy_top.model import Fleet, Snapshot
from dspy_top.model.budget import BudgetAlarm
from dspy_top.model.tree import ModuleNode
from dspy_top.pricing import Price
from dspy_top.sources.base import Source
from dspy_top.sources.collector import Collector
from dspy_top.viewer import format as fmt
from dspy_top.viewer.hosts_report import HostNotes, host_cell, host_of, host_width, hosts_json, hosts_line
from dspy_top.viewer.optimizer_report import optimizer_line, optimizers_json, optimizers_text
from dspy_top.viewer.terminal import for_stream, inert

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
                "pid": p.pid,
                "command": p.command,
                "state": p.state,
                "status": p.status,
                "socket": p.key,
                "started_at": p.started_at,
                "uptime_s": round(p.uptime, 3),
                "mechanism": p.mechanism,
                "calls": p.totals.calls,
                "cost_usd": round(p.totals.cost_usd, 10),
                "dropped_events": p.dropped,
                "final_numbers": p.final_numbers,
                "before_attach": p.before_attach.to_json() if p.before_attach is not None else None,
                "host": p.host,
            }
            for p in snapshot.processes
        ],
        "hosts": hosts_json(snapshot),
        "totals": {
            **totals.to_json(),
            "tokens_per_sec": round(snapshot.tokens_per_sec, 3),
            "output_tokens_per_sec": round(snapshot.output_tokens_per_sec, 3),
            "tokens_per_sec_avg": round(snapshot.tokens_per_sec_avg, 3),
            "cost_per_min": round(snapshot.cost_per_min, 10),
            "cache_hit_rate": totals.cache_hit_rate,
            "dropped_events": snapshot.dropped,
            "uptime_s": round(snapshot.uptime, 3),
        },
        "modules": [
            {
                "path": node.path,
                "class": node.class_name,
                **node.counters.to_json(),
                "tokens_per_sec": round(node.tokens_per_sec, 3),
                "cost_share": cost_share(node.counters, total_cost),
            }
            for node in leaves
        ],
        "models": [
            {
                "model": row.model,
                **row.counters.to_json(),
                "price_override": row.price_override,
                "tokens_per_sec": round(row.tokens_per_sec, 3),
                "output_tokens_per_sec": round(row.output_tokens_per_sec, 3),
            }
            for row in snapshot.models
        ],
        "scopes": [
            {
                "pid": s.pid,
                "id": s.id,
                "kind": s.kind,
                "state": s.state,
                "label": s.label,
                "done": s.done,
                "total": s.total,
                "score": s.score_so_far,
                "calls": s.usage.calls,
                "cost_usd": round(s.usage.cost_usd, 10),
            }
            for s in snapshot.scopes
        ],
        "rates": rates_json(snapshot),
        "budget": budget_json(snapshot),
        "optimizers": optimizers_json(snapshot),
    }


def cost_share(counters, total_cost: float) -> float | None:
    """A module's part of the total cost; None when the total is 0 or the module's cost is unknown."""
    if not total_cost or (counters.unpriced_calls and not counters.cost_usd):
        return None
    return counters.cost_usd / total_cost


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
        "eval_projection": None
        if projection is None
        else {
            "pid": projection.pid,
            "id": projection.id,
            "label": projection.label,
            "done": projection.done,
            "total": projection.total,
            "cost_usd": round(projection.spent_usd, 10),
            "cost_known": projection.cost_known,
            "projected_usd": None if projection.projected_usd is None else round(projection.projected_usd, 10),
        },
    }


def budget_json(snapshot: Snapshot) -> dict[str, Any]:
    """The viewer's `--budget` (null without one) and each job's own budget guard and alerts."""
    viewer = snapshot.budget
    return {
        "viewer": None
        if viewer is None
        else {
            "usd": viewer.usd,
            "spent_usd": round(viewer.spent, 10),
            "fraction": round(viewer.fraction, 6),
            "level": viewer.level,
            "cost_known": viewer.cost_known,
        },
        "jobs": [
            {
                "pid": job.pid,
                "on_exceed": job.on_exceed,
                "limits": [
                    {
                        "scope": limit.scope,
                        "name": limit.name,
                        "usd": limit.usd,
                        "spent_usd": round(limit.spent, 10),
                        "fraction": round(limit.fraction, 6),
                    }
                    for limit in job.limits
                ],
                "alerts": [
                    {
                        "level": int(alert.level) if alert.level.isdigit() else alert.level,
                        "scope": alert.scope,
                        "name": alert.name,
                        "spent_usd": alert.spent_usd,
                        "budget_usd": alert.budget_usd,
                        "action": alert.action,
                        "message": alert.message,
                    }
                    for alert in job.alerts
                ],
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
            yield ModuleNode(
                node.path,
                node.name,
                node.depth,
                node.class_name,
                node.own,
                node.own,
                node.tokens_per_sec - sum(c.tokens_per_sec for c in node.children),
                node.active,
                (),
            )
        stack.extend(sorted(node.children, key=lambda n: n.path, reverse=True))


def snapshot_text(snapshot: Snapshot) -> str:
    """One `top -b` style frame; every name a job chose is shown inert (no escape sequence gets through)."""
    t = snapshot.totals
    lines = [
        f"dspy-top - {fmt.clock(snapshot.at, millis=False)} up {fmt.uptime(snapshot.uptime)}, "
        f"{len(snapshot.in_view)} process{'es' if len(snapshot.in_view) != 1 else ''} ({snapshot.live} live), "
        f"{t.calls:,} calls ({t.in_flight} in flight)",
        f"Tokens: {fmt.token_count(t, t.prompt_tokens)} in, {fmt.token_count(t, t.completion_tokens)} out, "
        f"{fmt.rate(snapshot.tokens_per_sec)} tok/s now ({fmt.rate(snapshot.output_tokens_per_sec)} out/s), "
        f"{fmt.rate(snapshot.tokens_per_sec_avg)} avg"
        + (f" ({t.unmetered_calls} calls without token counts)" if t.unmetered_calls else ""),
        f"Cost: {fmt.cost(t)}"
        + (f" ({t.unpriced_calls} unpriced calls)" if t.unpriced_calls else "")
        + f", {fmt.dollars(snapshot.cost_per_min)}/min, cache {fmt.percent(t.cache_hit_rate)} "
        f"({t.cache_hits:,} hits, saved {fmt.dollars(t.cost_saved_usd)})",
        f"Errors: {t.errors:,}, retries: {t.retries:,}, dropped events: {snapshot.dropped:,}, "
        f"p50 {fmt.seconds(t.p50)}, p95 {fmt.seconds(t.p95)}",
    ]
    hosts = hosts_line(snapshot)
    if hosts:
        lines.append(hosts)
    if snapshot.burn is not None:
        lines.append(f"Burn: {fmt.burn(snapshot.burn)}")
        if snapshot.burn.evaluation is not None:
            lines.append(f"Projection: {fmt.projection(snapshot.burn.evaluation)}")
    if snapshot.budget is not None:
        lines.append(f"Budget: {fmt.viewer_budget(snapshot.budget)}")
    for job in snapshot.job_budgets:
        lines.append(f"Job budget: {fmt.job_budget(job)}")
    progress = optimizer_line(snapshot.optimizers, snapshot.at)
    if progress:
        lines.append(f"Optimizer: {inert(progress)}")
    for p in snapshot.not_final:
        lines.append(
            f"Final numbers not received from pid {p.pid}: its connection broke before its exit message, "
            "so its numbers are the last it sent"
        )
    for p in snapshot.in_view:
        if p.before_attach is not None:
            lines.append(f"Attached: pid {p.pid}: {p.before_attach.describe()}")
    lines.append("")
    width = host_width(snapshot)  # a HOST column only with --host
    lines.append(
        f"{host_cell('HOST', width)}{'PID':>7}  {'STATE':<8} {'UPTIME':>9} {'CALLS':>7} {'COST':>9}  COMMAND / STATUS"
    )
    for p in snapshot.processes:
        note = inert(p.command if p.state == "running" else f"{p.command}  [{p.status}]".strip())
        lines.append(
            f"{host_cell(host_of(p), width)}{p.pid:>7}  {p.state:<8} {fmt.uptime(p.uptime):>9} "
            f"{p.totals.calls:>7,} {fmt.cost(p.totals):>9}  {note}"
        )
    lines.append("")
    lines.append(
        f"{'MODULE':<40} {'CALLS':>7} {'INFL':>4} {'IN TOK':>8} {'OUT TOK':>8} {'TOK/S':>7} "
        f"{'COST':>9} {'P50':>6} {'P95':>6} {'ERR':>4} {'HITS':>5} {'SAVED':>9}"
    )
    for node in _leaves(snapshot.modules):
        c = node.counters
        lines.append(
            f"{inert(node.path)[:40]:<40} {c.calls:>7,} {c.in_flight:>4} "
            f"{fmt.token_count(c, c.prompt_tokens):>8} {fmt.token_count(c, c.completion_tokens):>8} "
            f"{fmt.rate(node.tokens_per_sec):>7} {fmt.cost(c):>9} "
            f"{fmt.seconds(c.p50):>6} {fmt.seconds(c.p95):>6} {c.errors:>4} {c.cache_hits:>5} "
            f"{fmt.dollars(c.cost_saved_usd):>9}"
        )
    lines.append("")
    lines.append(f"{'MODEL':<40} {'CALLS':>7} {'IN TOK':>8} {'OUT TOK':>8} {'COST':>9} {'HITS':>5}")
    for row in snapshot.models:
        c = row.counters
        lines.append(
            f"{inert(row.model)[:40]:<40} {c.calls:>7,} {fmt.tokens(c.prompt_tokens):>8} "
            f"{fmt.tokens(c.completion_tokens):>8} {fmt.cost(c):>9} {c.cache_hits:>5}"
            + ("  * your price" if row.price_override else "")
        )
    section = optimizers_text(snapshot)
    if section:
        lines += ["", *section]
    # What the lines above missed (a job budget's alert message, a label) is made inert here.
    return inert("\n".join(lines), multiline=True) + "\n"


def say(text: str, stream: TextIO | None = None) -> None:
    """One `dspy-top: ...` line on stderr: inert (it may quote a job), in characters the stream can take."""
    stream = stream or sys.stderr
    print(for_stream(f"dspy-top: {inert(text)}", stream), file=stream, flush=True)


class Printer:
    """Batch mode's output: each snapshot as a `top -b` frame or a JSON line; problems and budget alerts on stderr.

    With `repeats=False` (`dspy-top run -b`) a snapshot that would only repeat the last one
    printed, once no process is live, is left out: the job's final numbers print once.
    """

    def __init__(self, out: TextIO, as_json: bool, empty_note: str | None = None, repeats: bool = True) -> None:
        self.out = out
        self.as_json = as_json
        self.empty_note = empty_note  # said on stderr (`say`) when the first snapshot finds no process
        self.repeats = repeats
        self.printed = 0
        self.attached = False
        self.alarm = BudgetAlarm()
        self._reported: dict[str, str] = {}
        self._last: tuple | None = None  # what the last snapshot printed said, clocks aside
        self.host_notes = HostNotes()

    def print(self, fleet: Fleet) -> None:
        with fleet.lock:
            snapshot = fleet.snapshot(history_limit=0)
        said = (
            snapshot.totals,
            snapshot.dropped,
            tuple((p.key, p.state, p.status, p.totals) for p in snapshot.processes),
            tuple((h.name, h.state, h.status) for h in snapshot.hosts),
        )
        if not self.repeats and said == self._last and not snapshot.live:
            return
        self._last = said
        self.attached = self.attached or snapshot.attached
        if not snapshot.processes and self.printed == 0 and self.empty_note:
            say(self.empty_note)
        for line in self.host_notes.new(snapshot):
            say(line)
        for p in snapshot.problems:
            if self._reported.get(p.key) != p.status:
                self._reported[p.key] = p.status
                say(f"pid {p.pid or '?'}{f' on {p.host}' if p.host else ''}: {p.status}")
        for level in self.alarm.crossed(snapshot.budget):
            say(snapshot.budget.message(level))
        self.printed += 1
        if self.as_json:
            self.out.write(json.dumps(snapshot_json(snapshot, self.printed), separators=(",", ":")) + "\n")
        else:
            self.out.write(for_stream(("\n" if self.printed > 1 else "") + snapshot_text(snapshot), self.out))
        self.out.flush()

    def status(self) -> int:
        """0 if anything was attached, else 1; 3 once the viewer's budget was reached (BUDGET_REACHED)."""
        if not self.attached:
            return 1
        return BUDGET_REACHED if 100 in self.alarm.fired else 0


def watch(
    fleet: Fleet,
    printer: Printer,
    *,
    delay: float,
    iterations: int | None = None,
    first_after: float = 0.0,
    ended: Callable[[float], bool] | None = None,
) -> None:
    """Print a snapshot after `first_after` seconds, then every `delay`, `iterations` at most (None: no limit).

    `ended(seconds)` waits up to that long for what is watched to end (a `dspy-top run` job) and
    says whether it has: the loop returns then, however many were printed. Without it, the loop
    ends after `iterations` (or on ctrl+c).
    """
    next_at = time.monotonic() + first_after
    while True:
        pause = max(0.0, next_at - time.monotonic())
        if ended is not None:
            if ended(pause):
                return
        else:
            time.sleep(pause)
        if iterations is None or printer.printed < iterations:
            printer.print(fleet)
            if ended is None and iterations is not None and printer.printed >= iterations:
                return
        next_at += delay


def run(
    sources: Sequence[Source],
    *,
    iterations: int | None = None,
    delay: float = 1.0,
    as_json: bool = False,
    out: TextIO | None = None,
    prices: dict[str, Price] | None = None,
    budget_usd: float | None = None,
) -> int:
    """Print snapshots of `sources` until `iterations` are done (forever when None); the exit status
    (`Printer.status`)."""
    fleet = Fleet(prices=prices, budget_usd=budget_usd)
    collector = Collector(fleet, sources).start()
    printer = Printer(
        out or sys.stdout,
        as_json,
        empty_note=(
            f"no instrumented DSPy process found in {collector.where}; "
            "start one with `dspy-top run -- python job.py` or call dspy_top.instrument()"
        ),
    )
    try:
        collector.wait_settled(timeout=max((source.settle_within for source in collector.sources), default=4.0))
        watch(fleet, printer, delay=delay, iterations=iterations)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    finally:
        collector.stop()
    return printer.status()
