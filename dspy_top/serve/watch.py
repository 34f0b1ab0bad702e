"""The agent's one link to the viewer's collector: every local job, now and as they start, read as `JobView`s.

The same `Collector` + `Fleet` the viewer uses (dspy_top/sources/, with the `LocalSockets` source
discovering every socket) find, attach to and fold every instrumented process.
The exporters never touch them: they read frozen `JobView`s (exact counters from the jobs' `stats`
frames) and, for spans, the LM calls folded since they last asked.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from dspy_top.model import Fleet
from dspy_top.model.budget import BudgetLimit
from dspy_top.model.calls import CallSummary, History
from dspy_top.model.counters import Counters
from dspy_top.model.scopes import ScopeState
from dspy_top.model.states import CONNECTING, ENDED, FAILED, LOST, RUNNING
from dspy_top.serve.labels import job_name
from dspy_top.sources.collector import Collector
from dspy_top.sources.local import LocalSockets
from dspy_top.sources.targets import Discovered

__all__ = ["CONNECTING", "ENDED", "FAILED", "LOST", "RUNNING", "JobView", "JobWatch"]

HISTORY = 2_000  # calls the fleet keeps to deduplicate a snapshot against the live stream (no history pane here)


@dataclass(frozen=True)
class JobView:
    """One job as the exporters see it: what its last `stats` frame said, and its state."""

    key: str  # the socket path: unique while the process lives
    pid: int
    job: str  # the script name, the `job` label
    command: str
    state: str  # connecting, running, ended, lost, failed
    status: str
    started_at: float | None
    ended_at: float | None
    totals: Counters
    modules: tuple[tuple[str, Counters], ...]
    models: tuple[tuple[str, Counters], ...]
    scopes: tuple[ScopeState, ...]
    budget_limits: tuple[BudgetLimit, ...]
    dropped: int  # call events this agent did not receive (the job's queue, or this reader too slow)
    attached: bool  # said hello: its numbers are real

    @property
    def up(self) -> bool:
        return self.state == RUNNING

    @property
    def over(self) -> bool:
        """Ended, lost or never attached: nothing more will come."""
        return self.state in (ENDED, LOST, FAILED)


class _TappedHistory(History):
    """The fleet's history, also handing each new call to the span exporter (bounded: drops are counted).

    Calls a snapshot brings that ended before `since` (this agent's start) are not handed over: a
    restarted agent must not export them twice.
    """

    def __init__(self, capacity: int, pending: int, since: float) -> None:
        super().__init__(capacity)
        self.pending: deque[CallSummary] = deque()
        self.limit = pending
        self.since = since
        self.dropped = 0

    def add(self, call: CallSummary) -> bool:
        if not super().add(call):
            return False
        if len(self.pending) < self.limit:
            self.pending.append(call)
        else:
            self.dropped += 1
        return True

    def merge(self, calls: Iterable[CallSummary]) -> None:
        calls = list(calls)
        fresh = [c for c in calls if c.key not in self._seen and c.end >= self.since]
        super().merge(calls)
        room = max(0, self.limit - len(self.pending))
        self.pending.extend(fresh[:room])
        self.dropped += max(0, len(fresh) - room)


class JobWatch:
    """Attaches to every instrumented process of this user in `directory`; `jobs()` reads them."""

    def __init__(
        self,
        directory: Path,
        *,
        calls: bool = False,
        pending_calls: int = 20_000,
        since: float = 0.0,
        rescan_every: float = 1.0,
    ) -> None:
        self.fleet = Fleet(history_capacity=HISTORY)
        self._tap: _TappedHistory | None = None
        if calls:
            self._tap = _TappedHistory(HISTORY, pending_calls, since)
            self.fleet.history = self._tap
        sockets = LocalSockets(Discovered(), directory, rescan_every=rescan_every)
        self.collector = Collector(self.fleet, [sockets])

    def start(self, on_notice: Callable[[str], None] | None = None) -> JobWatch:
        self.collector.on_notice = on_notice
        self.collector.start()
        return self

    def stop(self) -> None:
        self.collector.stop()

    def settled(self) -> bool:
        return self.collector.settled()

    @property
    def version(self) -> int:
        """Bumped by every change the collector folds: read it before `jobs()`."""
        return self.fleet.version

    def jobs(self) -> list[JobView]:
        """Every process known now, attached or not, in a stable order."""
        with self.fleet.lock:
            processes = list(self.fleet.processes.values())
            return [
                JobView(
                    key=p.key,
                    pid=p.pid,
                    job=job_name(p.hello.argv if p.hello else ()),
                    command=p.command,
                    state=p.state,
                    status=p.status,
                    started_at=p.started_at,
                    ended_at=p.ended_at,
                    totals=p.totals,
                    modules=tuple((path, m.counters) for path, m in p.modules.items()),
                    models=tuple(p.models.items()),
                    scopes=tuple(p.scopes.values()),
                    budget_limits=p.budget_limits,
                    dropped=p.dropped_events + p.dropped_viewer,
                    attached=p.hello is not None,
                )
                for p in sorted(processes, key=lambda p: (p.pid, p.key))
            ]

    def take_calls(self) -> tuple[list[CallSummary], int]:
        """The calls folded since the last take, oldest first, and how many were dropped so far (bounded)."""
        tap = self._tap
        if tap is None:
            return [], 0
        with self.fleet.lock:
            calls = list(tap.pending)
            tap.pending.clear()
            return calls, tap.dropped

    def forget(self, key: str) -> None:
        """Drop an ended job (its series go); a new process on its socket is attached afresh."""
        self.collector.dismiss(key)
