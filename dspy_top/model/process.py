"""One attached process: its hello, its exact counters (from `stats` frames), rates, scopes and state.

Call events only feed the history; every total comes from `stats`, `snapshot` and `exit`
frames, which are exact even when call events were dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from dspy_top.model.calls import CallSummary, History
from dspy_top.model.counters import EMPTY, Counters
from dspy_top.model.rates import BucketSeries, RateWindow
from dspy_top.model.scopes import ScopeState, scope_from_wire
from dspy_top.protocol import Hello

# What a process row can say about its connection.
CONNECTING = "connecting"
RUNNING = "running"
ENDED = "ended"  # sent `exit`: final numbers
LOST = "lost"  # the connection broke without an `exit`
FAILED = "failed"  # never attached (bad socket, wrong version, permission)

_SCOPE_MESSAGES = ("eval_start", "eval_progress", "eval_end", "compile_start", "compile_end")


@dataclass(frozen=True)
class ModuleCounters:
    """One module path's exact counters, with its class and its chain of classes from the root."""

    path: str
    class_name: str
    chain: tuple[str, ...]
    counters: Counters


class ProcessState:
    """Everything known about one process; folded on the reader's side, read by `Fleet.snapshot`."""

    def __init__(self, key: str, pid: int | None, *, window: float, bucket: float, series_length: int) -> None:
        self.key = key
        self.pid = pid or 0
        self.hello: Hello | None = None
        self.state = CONNECTING
        self.status = "connecting…"
        self.attached_at: float | None = None
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
        self.events = 0  # messages folded, for the benchmark and the status line
        self._window = window
        self.token_rate = RateWindow(window)
        self.cost_rate = RateWindow(window)
        self.module_rates: dict[str, RateWindow] = {}
        self.token_series = BucketSeries(bucket, series_length)
        self.cost_series = BucketSeries(bucket, series_length)
        self._last_tokens: int | None = None
        self._last_cost = 0.0

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

    def connected(self, hello: Hello, now: float) -> None:
        self.hello = hello
        self.pid = hello.pid
        self.state = RUNNING
        self.status = "running"
        self.attached_at = now

    def failed(self, reason: str, now: float) -> None:
        """The connection could not be made or broke; an ended process stays ended."""
        if self.state == ENDED:
            return
        if self.state == RUNNING:
            self.state = LOST
            self.status = f"connection lost: {reason}"
            self.ended_at = now
        else:
            self.state = FAILED
            self.status = reason

    # --- folding --------------------------------------------------------------------

    def fold(self, message: Mapping[str, Any], now: float, history: History) -> None:
        """Apply one message from the process. Raises (ValueError, TypeError, KeyError) on malformed data."""
        self.events += 1
        kind = message.get("t")
        if kind == "call":
            history.add(CallSummary.from_wire(self.key, self.pid, message))
        elif kind == "stats":
            self._fold_stats(message, now)
        elif kind in _SCOPE_MESSAGES:
            self._fold_scope(message)
        elif kind == "snapshot":
            stats = message.get("stats") or {}
            self._fold_stats(stats, now)
            history.merge(CallSummary.from_wire(self.key, self.pid, c) for c in message.get("calls") or ())
        elif kind == "exit":
            if message.get("stats"):
                self._fold_stats(message["stats"], now)
            self.state = ENDED
            self.ended_at = float(message.get("at") or now)
            code = message.get("returncode", message.get("exit_code"))
            self.status = "ended" if code is None else f"ended (exit {code})"
            self.totals = _settled(self.totals)
        elif kind == "error":
            self.status = f"refused: {message.get('reason')}"
        # hello, payload and unknown types carry nothing to fold here.

    def _fold_stats(self, stats: Mapping[str, Any], now: float) -> None:
        self.totals = Counters.from_wire(stats.get("totals"))
        modules: dict[str, ModuleCounters] = {}
        for entry in stats.get("modules") or ():
            path = str(entry.get("path") or "(direct)")
            modules[path] = ModuleCounters(
                path=path, class_name=str(entry.get("class") or ""),
                chain=tuple(str(c) for c in entry.get("chain") or ()), counters=Counters.from_wire(entry),
            )
            rate = self.module_rates.get(path)
            if rate is None:
                rate = self.module_rates[path] = RateWindow(self._window)
            rate.observe(now, modules[path].counters.tokens)
        self.modules = modules
        self.models = {str(m.get("model") or "?"): Counters.from_wire(m) for m in stats.get("models") or ()}
        for scope in stats.get("scopes") or ():
            self._fold_scope(scope)
        self.dropped_events = int(stats.get("dropped_events") or 0)
        self.dropped_viewer = int(stats.get("dropped_viewer") or 0)
        self.internal_errors = int(stats.get("internal_errors") or 0)
        self.tool_calls = int(stats.get("tool_calls") or 0)
        self.tool_errors = int(stats.get("tool_errors") or 0)
        tokens = self.totals.tokens
        cost = self.totals.cost_usd
        if self._last_tokens is not None:
            # The first frame is the baseline: what happened before attaching is not a burst now.
            self.token_series.add(now, tokens - self._last_tokens)
            self.cost_series.add(now, cost - self._last_cost)
        self._last_tokens, self._last_cost = tokens, cost
        self.token_rate.observe(now, tokens)
        self.cost_rate.observe(now, cost)

    def _fold_scope(self, wire: Mapping[str, Any]) -> None:
        scope_id = wire.get("id")
        if scope_id is None:
            return
        scope_id = str(scope_id)
        self.scopes[scope_id] = scope_from_wire(self.key, self.pid, wire, self.scopes.get(scope_id))

    # --- reading --------------------------------------------------------------------

    def tokens_per_sec(self, now: float) -> float:
        return self.token_rate.rate(now) if self.live else 0.0

    def cost_per_sec(self, now: float) -> float:
        return self.cost_rate.rate(now) if self.live else 0.0

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
    from dataclasses import replace

    return replace(counters, in_flight=0)
