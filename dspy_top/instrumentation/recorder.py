"""The in-process recorder: exact counters plus a bounded stream of events for viewers.

The job's threads call `begin`/`finish`, the hot path. `begin` puts the call in the
`active` dict (what is in flight); `finish` writes the outcome onto the call's record,
appends the record to a deque and, once a batch is pending, folds it into the counters if
the lock is free, and otherwise leaves it to whoever holds it. So the hot path never waits:
under the GIL, threads that queue on a lock held by a descheduled thread form a convoy that
costs eight Evaluate workers hundreds of µs per call. Every reader (the server thread,
`stats()`, `snapshot()`, the budget guard) folds first under the lock, so what it reads is
exact; a backlog past `PENDING_LIMIT` is folded even if that means waiting, which bounds it.

A finished call updates one set of counters, its (module path, model) cell, plus one per
evaluation or compile it ran in; totals, modules and models are sums of cells, made when
read (a few times a second). Per call that is a quarter of the work of updating them all,
and the work that is left runs in batches, with the counters still in the CPU's cache.
Nothing here imports dspy, so it is tested directly with a fake clock.

Its parts, each in its own file: the counters (tally.py), a call's record (call_record.py), the payload
ring (payload_ring.py), and the mixins holding the rest of its methods, over the state `reset` makes: rare
events (scope_events.py), the event queue and snapshots (event_queue.py), stats frames (stats_frame.py).
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from dspy_top import latency
from dspy_top.instrumentation.call_record import CallRecord, describe_error
from dspy_top.instrumentation.event_queue import DEFAULT_QUEUE, EventQueue
from dspy_top.instrumentation.gil_handoff import Handoff
from dspy_top.instrumentation.payload_ring import DEFAULT_HISTORY_BYTES, KeptCall, PayloadRing
from dspy_top.instrumentation.scope_events import ScopeEvents
from dspy_top.instrumentation.stats_frame import StatsFrames
from dspy_top.instrumentation.tally import Tally

DEFAULT_HISTORY = 1000
# Hot-path records waiting for a fold; past this the hot path waits for the lock to fold them.
PENDING_LIMIT = 8000
# The hot path folds only once this many calls are pending (readers fold whatever there is
# first). Folding one call at a time ran with a cold CPU cache: DSPy's own work between two
# calls evicts the counters, so each fold missed on them all again (17 µs against 6 µs hot).
FOLD_BATCH = 128


class Recorder(ScopeEvents, EventQueue, StatsFrames):
    """Exact aggregates, recent history and a bounded event queue for one process."""

    def __init__(
        self,
        history_capacity: int = DEFAULT_HISTORY,
        queue_capacity: int = DEFAULT_QUEUE,
        clock: Callable[[], float] = time.time,
        perf: Callable[[], float] = time.perf_counter,
        history_bytes: int = DEFAULT_HISTORY_BYTES,
        payload_capacity: int | None = None,
    ) -> None:
        self.history_capacity = max(1, int(history_capacity))
        self.history_bytes = max(1, int(history_bytes))
        # Payloads the ring keeps: the history's, or more for a recording, which takes every call's
        # payload between two drains of the server (a busy job makes thousands in a late one).
        self.payload_capacity = max(self.history_capacity, int(payload_capacity or 0))
        self.queue_capacity = max(1, int(queue_capacity))
        self._clock = clock
        self._perf = perf
        self._ids = itertools.count(1)
        # Set by the budget guard: its limits and the alerts fired so far (sent in stats).
        self.budget: dict[str, Any] | None = None
        # Names calls begun with `modules` instead of a path: modules -> (path, class, chain).
        self.describe: Callable[[Any], tuple[str, str, tuple[str, ...]]] | None = None
        self.reset()

    def reset(self) -> None:
        """Start from zero (a forked child keeps none of its parent's numbers)."""
        self.lock = threading.Lock()
        # The server thread's turn for the GIL, given at the end of an LM call (gil_handoff.py).
        self.handoff = Handoff(self._perf)
        # Finished calls, per (module path, model); see the module docstring.
        self.cells: dict[tuple[str, str], Tally] = {}
        self.module_info: dict[str, dict[str, Any]] = {}
        # Calls begun and not finished, by id: a dict's set and pop need no lock.
        self.active: dict[int, CallRecord] = {}
        self.scopes: dict[str, dict[str, Any]] = {}
        self.scope_counters: dict[str, Tally] = {}
        self.events: deque[dict[str, Any] | tuple] = deque()  # see drain()
        # Hot-path records not yet folded into the counters (deque appends need no lock).
        self.pending: deque[CallRecord | tuple] = deque()  # finished calls; tool events as tuples
        self._progress: dict[str, tuple[int, float]] = {}  # evaluation progress, latest per scope
        self._progress_unsent: set[str] = set()
        self.recent: deque[tuple] = deque(maxlen=self.history_capacity)  # CALL_FIELDS rows
        # The latest calls' payloads, for `payload(id)` (payload_ring.py).
        self.payload_ring = PayloadRing(self.payload_capacity, self.history_bytes, keep=self.history_capacity)
        self.dropped_events = 0
        self.internal_errors = 0
        # Set by `dspy-top attach`: what DSPy's own history says happened before (history_backfill.py).
        self.before_attach: dict[str, Any] | None = None
        self.tool_calls = 0
        self.tool_errors = 0
        self.version = 0
        # Every queued event gets the next number; a snapshot says which number it covers,
        # so a viewer attaching mid-stream sees each event once.
        self.sequence = 0

    # --- the hot path -------------------------------------------------------------

    def begin(
        self,
        path: str | None,
        module_class: str | None,
        chain: tuple[str, ...],
        model: str,
        scopes: tuple[str, ...] = (),
        stream: bool = False,
        modules: Any = None,
    ) -> CallRecord:
        """A call starts. With `path` None, `modules` (DSPy's caller modules) name it when folded."""
        record = CallRecord(
            next(self._ids), path, module_class, chain, model, scopes, stream, self._clock(), self._perf(), modules
        )
        self.active[record.id] = record
        self.version += 1  # only tells the server something changed: a lost update is harmless
        return record

    def finish(
        self,
        record: CallRecord,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cached_tokens: int = 0,
        reasoning_tokens: int = 0,
        cost: float | None = None,
        cache_hit: bool = False,
        saved: float | None = None,
        error: BaseException | None = None,
        response_model: str | None = None,
        keep: bool = False,
    ) -> None:
        """The call ended. `keep`: hold its payload in the ring, for `payload(id)`."""
        now = self._perf()
        record.duration = max(0.0, now - record.started_perf)
        if error is not None:  # its type and message: the exception (and its traceback) can go
            error = describe_error(error)
        record.prompt_tokens = prompt_tokens
        record.completion_tokens = completion_tokens
        record.cached_tokens = cached_tokens
        record.reasoning_tokens = reasoning_tokens
        record.cost = cost
        record.cache_hit = cache_hit
        record.saved = saved
        record.error = error
        record.response_model = response_model
        record.keep = keep
        pending = self.pending
        pending.append(record)
        # Gone from `active` only once pending: a reader may count it twice for a moment, never lose it.
        self.active.pop(record.id, None)
        backlog = len(pending)
        if backlog >= FOLD_BATCH:
            if backlog > PENDING_LIMIT:
                self.fold()  # the hard bound: rare, only if the lock has been busy all along
            elif self.lock.acquire(blocking=False):
                try:
                    self._fold_locked()
                finally:
                    self.lock.release()
        if now >= self.handoff.due:  # the server thread waits for the GIL (gil_handoff.py)
            self.handoff.give(now)

    def discard(self, record: CallRecord) -> None:
        """dspy-top failed to finish this call: at least it is no longer in flight."""
        self.active.pop(record.id, None)

    def fold(self) -> None:
        """Apply every pending hot-path record to the counters, the history and the event queue."""
        with self.lock:
            self._fold_locked()

    def _fold_locked(self) -> None:
        pending = self.pending
        # Only what is there now: appends that race in are left for the next fold.
        for _ in range(len(pending)):
            item = pending.popleft()
            if type(item) is CallRecord:
                self._apply_finish(item)
            else:
                self._apply_tool(*item)
        if self._progress:
            self._apply_progress()

    def _apply_finish(self, record: CallRecord) -> None:
        if record.path is None:
            self._name(record)
        duration, prompt_tokens, completion_tokens = record.duration, record.prompt_tokens, record.completion_tokens
        cached_tokens, reasoning_tokens, cost = record.cached_tokens, record.reasoning_tokens, record.cost
        cache_hit, saved, error = record.cache_hit, record.saved, record.error
        usage_known = record.usage_known
        ended_at = record.started_at + duration
        bucket = latency.bucket_of(duration)
        billed = not cache_hit
        self.sequence += 1
        # One row in protocol.CALL_FIELDS order: a tuple of atomic values and a tuple, which
        # CPython leaves out of the cyclic GC once it has looked at it.
        row = (
            self.sequence,
            record.id,
            record.started_at,
            duration,
            record.path,
            record.module_class,
            record.model,
            record.response_model,
            prompt_tokens,
            completion_tokens,
            cached_tokens,
            reasoning_tokens,
            cost if billed else 0.0,
            saved if cache_hit else None,
            cache_hit,
            record.retries,
            error[0] if error is not None else None,
            error[1] if error is not None else None,
            record.scopes,
            record.stream,
            usage_known,
        )
        cell = self.cells.get((record.path, record.model))
        if cell is None:
            cell = self._new_cell(record)
        targets = [cell]
        for scope in record.scopes:
            counters = self.scope_counters.get(scope)
            if counters is not None:
                targets.append(counters)
        for counters in targets:
            counters.calls += 1
            counters.retries += record.retries
            counters.latency_s += duration
            counters.latency_hist[bucket] = counters.latency_hist.get(bucket, 0) + 1
            counters.last_at = ended_at
            if error is not None:
                counters.errors += 1
            if cache_hit:
                counters.cache_hits += 1
                if saved is not None:
                    counters.cost_saved_usd += saved
            else:
                counters.prompt_tokens += prompt_tokens
                counters.completion_tokens += completion_tokens
                counters.cached_tokens += cached_tokens
                counters.reasoning_tokens += reasoning_tokens
                if cost is not None:
                    counters.cost_usd += cost
                elif prompt_tokens or completion_tokens or not usage_known:
                    counters.unpriced_calls += 1
                if not usage_known:
                    counters.unmetered_calls += 1
        self.version += 1
        self.recent.append(row)
        if record.keep:
            self.payload_ring.keep(record)
        if len(self.events) >= self.queue_capacity:
            self.dropped_events += 1
        else:
            self.events.append(row)

    def _new_cell(self, record: CallRecord) -> Tally:
        cell = self.cells[(record.path, record.model)] = Tally()
        if record.path not in self.module_info:
            self.module_info[record.path] = {"class": record.module_class, "chain": list(record.chain)}
        return cell

    def _name(self, record: CallRecord) -> str:
        """Fill in a call's module path from the modules it was begun with; call with the lock held."""
        try:
            path, module_class, chain = self.describe(record.modules)
        except Exception:
            self.internal_errors += 1
            path, module_class, chain = "(unknown)", "?", ()
        record.module_class, record.chain = module_class, chain
        record.path = path  # last: another reader takes a set path as the whole name
        record.modules = None
        return path

    def count_internal_error(self) -> None:
        # Unlocked on purpose: this runs from except blocks, where taking the lock
        # could deadlock if the failure happened while holding it.
        self.internal_errors += 1

    # --- payloads ------------------------------------------------------------------

    def payloads_of(self, call_ids: list[int], take: bool = False) -> list[KeptCall | None]:
        """`payload()` of each id, under one lock (None for a call the ring no longer holds);
        `take`: a recording's, which the ring then need not hold (PayloadRing.taken)."""
        with self.lock:
            self._fold_locked()
            slots = list(map(self.payload_ring.payloads.get, call_ids))
            if take:
                self.payload_ring.taken([pair for pair in zip(call_ids, slots) if pair[1] is not None])
            if None not in slots:  # the usual case: a copy of each in C
                return list(map(KeptCall, slots))
            return [None if slot is None else KeptCall(slot) for slot in slots]

    def take_payloads(self, call_ids: list[int], walk: Callable[[list[int], dict[int, list]], Any]) -> Any:
        """A recording's `walk(call_ids, slots)` over the ring's map of call id -> slot itself (no
        copies), under the lock, once folded: it reads the slots of these ids (a call the map
        lacks is gone) and marks those it is done with taken (PayloadRing.taken). Its result.
        payload_pack.py's walk is C, which no other thread can interrupt."""
        with self.lock:
            self._fold_locked()
            return walk(call_ids, self.payload_ring.payloads)

    def payload(self, call_id: int) -> KeptCall | None:
        """A recent call kept with `keep=True`: the source of its full payload (payload.materialize)."""
        with self.lock:
            self._fold_locked()
            return self.payload_ring.get(call_id)

    def payload_missing_reason(self, call_id: int) -> str | None:
        """Why `payload(call_id)` found nothing, when it is not the usual (older than the last calls kept)."""
        return self.payload_ring.missing_reason(call_id)
