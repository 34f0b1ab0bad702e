"""One attached process: its hello, its exact counters (from `stats` frames), rates, scopes and state.

Call events only feed the history; every total comes from `stats`, `snapshot` and `exit`
frames, which are exact even when call events were dropped. A call event is shown once the
next `stats` frame (which the process computes after sending it, so it counts it) is folded:
snapshots never show a call the totals do not count yet. The rates start from
the recent calls a `snapshot` carries, so the first frame already says how busy the job is.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from dspy_top.model.before_attach import BeforeAttach
from dspy_top.model.budget import BudgetAlert, BudgetLimit, JobBudget
from dspy_top.model.burn import BURN_WINDOW
from dspy_top.model.calls import CallSummary, History
from dspy_top.model.counters import EMPTY, Counters
from dspy_top.model.rates import BucketSeries, RateWindow, seed_windows
from dspy_top.model.repricing import Repricer, TokenCell
from dspy_top.model.scopes import ScopeState, add_late_call, scope_from_record
from dspy_top.model.states import CONNECTING, CONNECTING_STATUS, ENDED, FAILED, LOST, NOT_FINAL, RUNNING
from dspy_top.protocol import Hello
from dspy_top.schema.records import (
    AlertRecord,
    BudgetRecord,
    CallsRecord,
    ErrorRecord,
    ExitRecord,
    Record,
    ScopeRecord,
    SnapshotRecord,
    StatsRecord,
)

# What a process row can say about its connection.
# Call events left out of snapshots while waiting for the `stats` frame that counts them; past this
# many (a process that sends no stats), they are shown anyway.
UNSETTLED_LIMIT = 20_000


@dataclass(frozen=True)
class ModuleCounters:
    """One module path's exact counters, with its class and its chain of classes from the root."""

    path: str
    class_name: str
    chain: tuple[str, ...]
    counters: Counters
    by_model: dict[str, TokenCell] | None = None  # billed token cells per model, for re-pricing


class ProcessState:
    """Everything known about one process; folded on the reader's side, read by `Fleet.snapshot`."""

    def __init__(
        self,
        key: str,
        pid: int | None,
        *,
        window: float,
        bucket: float,
        series_length: int,
        repricer: Repricer | None = None,
        burn_window: float = BURN_WINDOW,
        host: str | None = None,
        stats_follow: bool = True,
    ) -> None:
        self.key = key
        self.pid = pid or 0
        self.host = host  # the machine it runs on, as the user named it (`--host`); None: this one
        self.hello: Hello | None = None
        self.state = CONNECTING
        self.status = CONNECTING_STATUS
        self.ended_at: float | None = None
        self.totals = EMPTY
        self.modules: dict[str, ModuleCounters] = {}
        self.models: dict[str, Counters] = {}
        self.scopes: dict[str, ScopeState] = {}
        self.dropped_events = 0
        self.dropped_viewer = 0
        self.internal_errors = 0
        self.tool_calls = 0
        self.tool_errors = 0
        self.events = 0  # events folded (each call of a `calls` batch counts), for the benchmark and the status line
        self._window = window
        self.token_rate = RateWindow(window)
        self.output_rate = RateWindow(window)  # completion tokens: generation speed
        self.cost_rate = RateWindow(window)
        self.module_rates: dict[str, RateWindow] = {}
        self.model_rates: dict[str, tuple[RateWindow, RateWindow]] = {}  # (all tokens, output tokens)
        # Call events received since the last stats frame: the newest of this process's calls in the
        # history, which snapshots leave out until a stats frame counts them.
        self.unsettled = 0
        self.stats_follow = stats_follow  # a stats frame soon counts each call event (False: a recording)
        self.token_series = BucketSeries(bucket, series_length)
        self.cost_series = BucketSeries(bucket, series_length)
        self._last_tokens: int | None = None
        self._last_cost = 0.0
        self.repricer = repricer or Repricer()
        self.raw_models: dict[str, Counters] = {}  # as the job priced them (re-pricing reads these)
        self.burn_tokens = RateWindow(burn_window)
        self.burn_cost = RateWindow(burn_window)
        self.budget_on_exceed: str | None = None  # the job's budget guard, when it has one
        self.budget_limits: tuple[BudgetLimit, ...] = ()
        self.budget_alerts: dict[tuple[str, str, str, str], BudgetAlert] = {}
        self.before_attach: BeforeAttach | None = None  # `dspy-top attach`: what DSPy's history counted

    # --- lifecycle ------------------------------------------------------------------

    @property
    def started_at(self) -> float | None:
        return self.hello.started_at if self.hello is not None else None

    @property
    def command(self) -> str:
        if self.hello is None:
            return ""
        return " ".join(self.hello.argv) or "python"

    @property
    def live(self) -> bool:
        return self.state in (CONNECTING, RUNNING)

    def connecting(self, status: str) -> None:
        """Being attached to, or waited for (`status` says why it still waits); tried again after a failure."""
        self.state = CONNECTING
        self.status = status

    def rekey(self, key: str) -> None:
        """Known by another key from now on (kept apart from a new process that reuses its own)."""
        self.key = key
        self.scopes = {scope_id: replace(scope, process=key) for scope_id, scope in self.scopes.items()}
        alerts = (replace(alert, process=key) for alert in self.budget_alerts.values())
        self.budget_alerts = {alert.key: alert for alert in alerts}

    def connected(self, hello: Hello) -> None:
        self.hello = hello
        self.pid = hello.pid
        self.state = RUNNING
        self.status = "running"

    def failed(self, reason: str, now: float, protocol: bool = False) -> None:
        """The connection could not be made or broke (`protocol`: it sent something the schema refuses,
        and nothing more is read from it). An ended, or already lost, process stays so."""
        if self.state in (ENDED, LOST):
            return
        if protocol:
            reason = f"protocol error: {reason}"
        if self.state == RUNNING:
            # Attached, then cut off before its `exit`: what it last sent is shown, never as final.
            self.state = LOST
            self.status = f"{reason if protocol else f'connection lost: {reason}'} · {NOT_FINAL}"
            self.ended_at = now
        else:
            self.state = FAILED
            self.status = reason

    @property
    def final_numbers(self) -> str | None:
        """ "received" once the `exit` came, "not received" when the stream broke first, else None."""
        return {ENDED: "received", LOST: "not received"}.get(self.state)

    # --- folding --------------------------------------------------------------------

    def fold(self, record: Record, now: float, history: History) -> None:
        """Apply one checked message from the process (see dspy_top/schema/)."""
        kind = type(record)
        if kind is CallsRecord:
            self._fold_calls(record.rows, history)
            return
        self.events += 1
        if kind is StatsRecord:
            self._fold_stats(record, now)
            self.settle(history)
        elif kind is ScopeRecord:
            self._fold_scope(record)
        elif kind is SnapshotRecord:
            self._fold_stats(record.stats, now)
            key, pid = self.key, self.pid
            calls = [CallSummary.from_row(key, pid, row) for row in record.calls]
            if self.repricer:
                calls = [self.repricer.call(call) for call in calls]
            self._seed_rates(calls, now)
            history.merge(calls)
            self.settle(history)
        elif kind is ExitRecord:
            if record.stats is not None:
                self._fold_stats(record.stats, now)
            self.settle(history)
            self.state = ENDED
            self.ended_at = record.at or now
            self.status = "ended" if record.code is None else f"ended (exit {record.code})"
            if record.detached:
                self.status = "detached (`dspy-top detach`: the job runs on)"
            self.totals = _settled(self.totals)
            self.modules = {path: replace(m, counters=_settled(m.counters)) for path, m in self.modules.items()}
            self.models = {name: _settled(counters) for name, counters in self.models.items()}
        elif kind is ErrorRecord:
            self.status = f"refused: {record.reason}"
        elif kind is AlertRecord:
            self._fold_alert(record)
        # payload answers go to whoever asked; they hold nothing to fold here.

    def _fold_calls(self, rows: tuple[tuple, ...], history: History) -> None:
        """Call events: the bulk of a busy process's stream. They join the history at once, counted as
        `unsettled` (left out of snapshots) until the next stats frame counts them."""
        repricer, add, new, prefix = self.repricer, history.add, tuple.__new__, (self.key, self.pid)
        added = 0
        for row in rows:
            call = new(CallSummary, prefix + row)  # CallSummary.from_row, inlined: this loop is the hot path
            if repricer:
                call = repricer.call(call)
            if add(call):
                added += 1
                if call[18]:  # scopes
                    self._late_call(call)
        self.events += len(rows)
        if self.stats_follow:
            self.unsettled = min(UNSETTLED_LIMIT, self.unsettled + added)

    def settle(self, history: History | None = None) -> None:
        """The calls received so far are counted by the totals (a stats frame came, or the stream ended)."""
        self.unsettled = 0

    def _fold_stats(self, stats: StatsRecord, now: float) -> None:
        raw_totals = Counters.from_record(stats.totals)
        raw_models = {name: Counters.from_record(counters) for name, counters in stats.models}
        self.raw_models = raw_models
        repricer = self.repricer
        modules: dict[str, ModuleCounters] = {}
        raw_module_cost: dict[str, float] = {}
        for entry in stats.modules:
            path = entry.path
            counters = Counters.from_record(entry.counters)
            cells = entry.by_model or None
            raw_module_cost[path] = counters.cost_usd
            if repricer and cells:
                counters = repricer.module(counters, cells, raw_models)
            modules[path] = ModuleCounters(
                path=path, class_name=entry.class_name, chain=entry.chain, counters=counters, by_model=cells
            )
            rate = self.module_rates.get(path)
            if rate is None:
                rate = self.module_rates[path] = RateWindow(self._window)
            rate.observe(now, modules[path].counters.tokens)
        self.modules = modules
        if repricer:
            self.totals = repricer.totals(raw_totals, raw_models)
            self.models = {name: repricer.model(name, counters) for name, counters in raw_models.items()}
        else:
            self.totals, self.models = raw_totals, raw_models
        for name, counters in self.models.items():
            rates = self.model_rates.get(name)
            if rates is None:
                rates = self.model_rates[name] = (RateWindow(self._window), RateWindow(self._window))
            rates[0].observe(now, counters.tokens)
            rates[1].observe(now, counters.completion_tokens)
        if stats.budget is not None:
            self._fold_budget(stats.budget, raw_totals.cost_usd, raw_module_cost)
        if stats.before_attach is not None:
            self.before_attach = BeforeAttach.from_record(stats.before_attach)
        for scope in stats.scopes:
            self._fold_scope(scope)
        self.dropped_events = stats.dropped_events
        self.dropped_viewer = stats.dropped_viewer
        self.internal_errors = stats.internal_errors
        self.tool_calls = stats.tool_calls
        self.tool_errors = stats.tool_errors
        tokens = self.totals.tokens
        cost = self.totals.cost_usd
        if self._last_tokens is not None:
            # The first frame is the baseline: what happened before attaching is not a burst now.
            self.token_series.add(now, tokens - self._last_tokens)
            self.cost_series.add(now, cost - self._last_cost)
        self._last_tokens, self._last_cost = tokens, cost
        self.token_rate.observe(now, tokens)
        self.output_rate.observe(now, self.totals.completion_tokens)
        self.cost_rate.observe(now, cost)
        self.burn_tokens.observe(now, tokens)
        self.burn_cost.observe(now, cost)

    def _seed_rates(self, calls: list[CallSummary], now: float) -> None:
        """Rates and sparklines from the recent calls of a snapshot frame, so that a viewer that has
        just attached (`dspy-top -b -n 1`) reads the job's recent rate, not 0."""
        if self.hello is None or not calls:
            return
        complete = len(calls) < self.hello.history_capacity  # every call since the start is there
        started = self.hello.started_at
        # What each window is measured over: the calls the snapshot holds must cover it.
        since = started if complete else min(call.end for call in calls)
        windows = [
            (self.token_rate, lambda c: c.prompt_tokens + c.completion_tokens, None),
            (self.output_rate, lambda c: c.completion_tokens, None),
            (self.cost_rate, lambda c: c.cost_usd or 0.0, None),
            (self.burn_tokens, lambda c: c.prompt_tokens + c.completion_tokens, None),
            (self.burn_cost, lambda c: c.cost_usd or 0.0, None),
        ]
        for path, rate in self.module_rates.items():
            windows.append((rate, lambda c: c.prompt_tokens + c.completion_tokens, lambda c, p=path: c.path == p))
        for model, (tokens, output) in self.model_rates.items():
            windows.append((tokens, lambda c: c.prompt_tokens + c.completion_tokens, lambda c, m=model: c.model == m))
            windows.append((output, lambda c: c.completion_tokens, lambda c, m=model: c.model == m))
        seed_windows(windows, calls, since, now)
        first = self.token_series.width * (int(now / self.token_series.width) - self.token_series.length)
        for call in calls:
            end = call.end
            if end > since and first <= end <= now:
                self.token_series.add(end, call.prompt_tokens + call.completion_tokens)
                self.cost_series.add(end, call.cost_usd or 0.0)

    def _fold_scope(self, record: ScopeRecord) -> None:
        if record.id is None:
            return
        scope = scope_from_record(self.key, self.pid, record, self.scopes.get(record.id))
        if self.repricer and record.usage is not None:
            scope = replace(scope, usage=self.repricer.usage(scope.usage, self.raw_models))
        self.scopes[record.id] = scope

    def _late_call(self, call: CallSummary) -> None:
        # Events arrive in order, so a call event after its scope's end message was not in that
        # message's usage (a snapshot's scopes likewise include every call before its seq).
        for scope_id in call.scopes:
            scope = self.scopes.get(scope_id)
            if scope is not None and not scope.running:
                self.scopes[scope_id] = add_late_call(scope, call)

    def _fold_budget(self, record: BudgetRecord, total_cost: float, module_cost: dict[str, float]) -> None:
        """The job's guard from `stats.budget`; spent figures are the job's own (what its guard compares)."""
        self.budget_on_exceed = record.on_exceed
        limits = []
        for scope, name, usd in record.limits:
            if scope == "total":
                spent = total_cost
            elif scope == "module":
                spent = module_cost.get(name, 0.0)
            else:
                spent = self.raw_models.get(name, EMPTY).cost_usd
            limits.append(BudgetLimit(scope, name, usd, spent))
        self.budget_limits = tuple(limits)
        for alert in record.alerts:
            self._fold_alert(alert)

    def _fold_alert(self, record: AlertRecord) -> None:
        alert = BudgetAlert.from_record(self.key, self.pid, record)
        self.budget_alerts.setdefault(alert.key, alert)

    @property
    def job_budget(self) -> JobBudget | None:
        if self.budget_on_exceed is None and not self.budget_alerts:
            return None
        return JobBudget(
            self.key, self.pid, self.budget_on_exceed or "warn", self.budget_limits, tuple(self.budget_alerts.values())
        )

    # --- reading --------------------------------------------------------------------

    def tokens_per_sec(self, now: float) -> float:
        return self.token_rate.rate(now) if self.live else 0.0

    def output_tokens_per_sec(self, now: float) -> float:
        return self.output_rate.rate(now) if self.live else 0.0

    def model_tokens_per_sec(self, model: str, now: float) -> tuple[float, float]:
        """(all tokens, output tokens) per second of one model; nothing while not live."""
        rates = self.model_rates.get(model)
        if rates is None or not self.live:
            return 0.0, 0.0
        return rates[0].rate(now), rates[1].rate(now)

    def cost_per_sec(self, now: float) -> float:
        return self.cost_rate.rate(now) if self.live else 0.0

    def burn_per_sec(self, now: float) -> tuple[float, float]:
        """(tokens, dollars) per second over the burn window; nothing while not live."""
        if not self.live:
            return 0.0, 0.0
        return self.burn_tokens.rate(now), self.burn_cost.rate(now)

    def module_tokens_per_sec(self, path: str, now: float) -> float:
        rate = self.module_rates.get(path)
        return rate.rate(now) if rate is not None and self.live else 0.0

    def uptime(self, now: float) -> float:
        if self.started_at is None:
            return 0.0
        end = self.ended_at if self.ended_at is not None else now
        return max(0.0, end - self.started_at)


def _settled(counters: Counters) -> Counters:
    # A process that exited has nothing in flight, whatever its last frame said.
    if counters.in_flight == 0:
        return counters
    return replace(counters, in_flight=0)
