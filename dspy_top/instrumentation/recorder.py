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
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from dspy_top import latency
from dspy_top.instrumentation.payload import BYTES_PER_TOKEN, text_size
from dspy_top.protocol import (
    BUDGET,
    CALL_FIELDS,
    COMPILE_END,
    COMPILE_START,
    EVAL_END,
    EVAL_PROGRESS,
    EVAL_START,
    TOOL,
    call_dicts,
)

DEFAULT_HISTORY = 1000
# The payload ring's bound in bytes, beside its bound in calls (DSPY_TOP_HISTORY_BYTES).
DEFAULT_HISTORY_BYTES = 64 * 2**20
# What one kept payload is reckoned at beside its text: its slot, the containers, the options.
PAYLOAD_OVERHEAD = 512
# How many ids of payloads dropped for size are remembered, to say so when one is asked for
# (the viewer's history holds 10,000 calls).
SIZE_DROPS_REMEMBERED = 10_000
DEFAULT_QUEUE = 10_000
# Finished evaluations and compiles kept for late viewers; running ones are always kept
# (a frame lists at most this many, the newest).
MAX_SCOPES = 500
# A stats frame lists at most this many models and module paths: the rest (fewest calls
# first) are summed into one entry named OTHER that says how many it holds. 30,000
# distinct model names would otherwise make a frame of megabytes, every half second.
MAX_MODELS = 100
MAX_MODULES = 200
OTHER = "(other)"
# Budget alerts kept (and sent in every stats frame); a repeat of one (the same stop
# request again) counts on the first instead of adding another.
MAX_ALERTS = 50
# Hot-path records waiting for a fold; past this the hot path waits for the lock to fold them.
PENDING_LIMIT = 8000
# The hot path folds only once this many calls are pending (readers fold whatever there is
# first). Folding one call at a time ran with a cold CPU cache: DSPy's own work between two
# calls evicts the counters, so each fold missed on them all again (17 µs against 6 µs hot).
FOLD_BATCH = 128
# The module path of the calls counted from DSPy's history at `dspy-top attach`.
BEFORE_ATTACH = "(before attach)"


class Counters:
    """Exact usage counters for the whole process, one module path, one model or one scope."""

    __slots__ = (
        "calls", "errors", "retries", "cache_hits", "prompt_tokens", "completion_tokens",
        "cached_tokens", "reasoning_tokens", "cost_usd", "unpriced_calls", "unmetered_calls", "cost_saved_usd",
        "latency_s", "in_flight", "latency_hist", "last_at", "by_model",
    )

    def __init__(self) -> None:
        self.calls = self.errors = self.retries = self.cache_hits = 0
        self.prompt_tokens = self.completion_tokens = self.cached_tokens = self.reasoning_tokens = 0
        self.cost_usd = 0.0
        self.unpriced_calls = 0
        self.unmetered_calls = 0  # calls whose token usage DSPy did not report: not in the token counts
        self.cost_saved_usd = 0.0
        self.latency_s = 0.0
        self.in_flight = 0
        self.latency_hist: dict[int, int] = {}
        self.last_at = 0.0
        # Module counters only: billed [prompt, completion, cached] tokens per model, so a
        # viewer can re-price a module's cost with its own price overrides.
        self.by_model: dict[str, list[int]] | None = None

    def add(self, other: Counters) -> None:
        """Sum another set into this one (in_flight and by_model are the caller's business)."""
        self.calls += other.calls
        self.errors += other.errors
        self.retries += other.retries
        self.cache_hits += other.cache_hits
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.cost_usd += other.cost_usd
        self.unpriced_calls += other.unpriced_calls
        self.unmetered_calls += other.unmetered_calls
        self.cost_saved_usd += other.cost_saved_usd
        self.latency_s += other.latency_s
        hist = self.latency_hist
        for bucket, count in other.latency_hist.items():
            hist[bucket] = hist.get(bucket, 0) + count
        if other.last_at > self.last_at:
            self.last_at = other.last_at

    def to_wire(self) -> dict[str, Any]:
        return {
            "calls": self.calls, "errors": self.errors, "retries": self.retries,
            "cache_hits": self.cache_hits, "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens, "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens, "cost_usd": self.cost_usd,
            "unpriced_calls": self.unpriced_calls, "unmetered_calls": self.unmetered_calls,
            "cost_saved_usd": self.cost_saved_usd,
            "latency_s": self.latency_s, "in_flight": self.in_flight,
            "latency_sketch": latency.encode(self.latency_hist), "last_at": self.last_at,
            **({"by_model": {m: list(v) for m, v in self.by_model.items()}} if self.by_model is not None else {}),
        }


class CallRecord:
    """One LM call: who made it, set at begin; its outcome, set at finish; and, for the history
    pane, the plain parts of its payload (see payload.py).

    Finish writes its outcome here rather than into a new tuple. The record lives until it is
    folded (a batch, within ~250 ms); the payload ring then copies the parts a payload shows
    into a slot it reuses. Nothing here refers to the program's objects once the call has
    returned: the path is named at begin, the payload is DSPy's plain containers (messages,
    outputs, usage, options), and an error is its type name and message, so an LM, a module or
    an exception the program drops is freed at once."""

    __slots__ = ("id", "path", "module_class", "chain", "modules", "model", "started_at", "started_perf",
                 "retries", "partial_usage", "scopes", "stream",
                 "duration", "prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens",
                 "cost", "cache_hit", "saved", "error", "response_model", "keep", "usage_known",
                 "model_type", "messages", "prompt", "lm_options", "call_options", "outputs", "usage", "dspy_cost",
                 "cost_details")

    def __init__(self, call_id, path, module_class, chain, model, scopes, stream, started_at, started_perf, modules):
        self.id = call_id
        # Either the path, class and chain, or the calling modules to name them from later
        # (Recorder.describe).
        self.path = path
        self.module_class = module_class
        self.chain = chain
        self.modules = modules
        self.model = model
        self.scopes = scopes
        self.stream = stream
        self.started_at = started_at
        self.started_perf = started_perf
        self.retries = 0
        self.usage_known = True
        # Set only when needed (readers use getattr with a default): partial_usage by a failed
        # call's accounting; the payload's parts (model_type ... cost_details) by the hooks.


# What a payload shows of a call (payload.materialize reads these names), in slot order; a slot
# also holds the payload's reckoned size, last.
KEPT_FIELDS = ("id", "model", "model_type", "messages", "prompt", "lm_options", "call_options", "outputs", "usage",
               "dspy_cost", "cost_details", "error", "cache_hit", "response_model")
_PARTS = KEPT_FIELDS[2:11]  # set by the hooks: a record finished another way may lack them
_TEXT_PARTS = ("messages", "prompt", "outputs")  # what a payload's size is reckoned from without tokens
_EMPTY_SLOT = (None,) * (len(KEPT_FIELDS) + 1)


class KeptCall:
    """One call's payload sources, copied out of its ring slot when a viewer asks for them."""

    __slots__ = KEPT_FIELDS

    def __init__(self, slot: list) -> None:
        for name, value in zip(KEPT_FIELDS, slot):
            setattr(self, name, value)


class Recorder:
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
        # Finished calls, per (module path, model); see the module docstring.
        self.cells: dict[tuple[str, str], Counters] = {}
        self.module_info: dict[str, dict[str, Any]] = {}
        # Calls begun and not finished, by id: a dict's set and pop need no lock.
        self.active: dict[int, CallRecord] = {}
        self.scopes: dict[str, dict[str, Any]] = {}
        self.scope_counters: dict[str, Counters] = {}
        self.events: deque[dict[str, Any] | tuple] = deque()  # see drain()
        # Hot-path records not yet folded into the counters (deque appends need no lock).
        self.pending: deque[CallRecord | tuple] = deque()  # finished calls; tool events as tuples
        self._progress: dict[str, tuple[int, float]] = {}  # evaluation progress, latest per scope
        self._progress_unsent: set[str] = set()
        self.recent: deque[tuple] = deque(maxlen=self.history_capacity)  # CALL_FIELDS rows
        # The payload ring: slots (lists in KEPT_FIELDS order, then the size), oldest first,
        # overwritten in place once made, and call id -> slot. Slots are made as calls come, up
        # to payload_capacity, and reused: keeping each call's record instead made every call
        # leave a long-lived object behind, which brought the job's next full garbage collection
        # sooner (benchmarks/README.md). Bounded by history_bytes too (payload.text_size).
        self.ring: deque[list] = deque()
        self._spare_slots: list[list] = []
        self.payloads: dict[int, list] = {}
        self.payload_bytes = 0
        # Ids of the latest payloads dropped to stay under history_bytes (and a set to look them up).
        self._size_drops: deque[int] = deque()
        self._size_dropped: set[int] = set()
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

    def begin(self, path: str | None, module_class: str | None, chain: tuple[str, ...], model: str,
              scopes: tuple[str, ...] = (), stream: bool = False, modules: Any = None) -> CallRecord:
        """A call starts. With `path` None, `modules` (DSPy's caller modules) name it when folded."""
        record = CallRecord(next(self._ids), path, module_class, chain, model, scopes, stream,
                            self._clock(), self._perf(), modules)
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
        record.duration = max(0.0, self._perf() - record.started_perf)
        if error is not None:  # its type and message: the exception (and its traceback) can go
            error = _describe_error(error)
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
        if backlog < FOLD_BATCH:
            return
        if backlog > PENDING_LIMIT:
            self.fold()  # the hard bound: rare, only if the lock has been busy all along
        elif self.lock.acquire(blocking=False):
            try:
                self._fold_locked()
            finally:
                self.lock.release()

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
            self.sequence, record.id, record.started_at, duration, record.path, record.module_class, record.model,
            record.response_model, prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,
            cost if billed else 0.0, saved if cache_hit else None, cache_hit, record.retries,
            error[0] if error is not None else None, error[1] if error is not None else None,
            record.scopes, record.stream, usage_known,
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
            self._keep(record)
        if len(self.events) >= self.queue_capacity:
            self.dropped_events += 1
        else:
            self.events.append(row)

    def _keep(self, record: CallRecord) -> None:
        """Copy what the call's payload shows into a slot of the ring; drop the oldest past either bound."""
        # Reckoned from the tokens billed (the text sent and received), or else from the text itself.
        tokens = record.prompt_tokens + record.completion_tokens
        if tokens and not record.cache_hit:
            size = PAYLOAD_OVERHEAD + BYTES_PER_TOKEN * tokens
        else:
            size = PAYLOAD_OVERHEAD + sum(text_size(getattr(record, name, None)) for name in _TEXT_PARTS)
        if size > self.history_bytes:
            self._dropped_for_size(record.id)
            return
        ring, payloads = self.ring, self.payloads
        slot = None
        if len(ring) >= self.payload_capacity:  # the usual case once the ring is full: reuse the oldest
            slot = ring.popleft()
            del payloads[slot[0]]
            self.payload_bytes -= slot[-1]
        while ring and self.payload_bytes + size > self.history_bytes:
            oldest = ring.popleft()
            del payloads[oldest[0]]
            self.payload_bytes -= oldest[-1]
            self._dropped_for_size(oldest[0])
            if slot is None:
                slot = oldest
            else:
                oldest[:] = _EMPTY_SLOT  # let go of its parts now: it may wait a while to be reused
                self._spare_slots.append(oldest)
        if slot is None:
            slot = self._spare_slots.pop() if self._spare_slots else list(_EMPTY_SLOT)
        error = record.error
        if error is not None:
            error = f"{error[0]}: {error[1]}"
        try:
            slot[:] = (record.id, record.model, record.model_type, record.messages, record.prompt, record.lm_options,
                       record.call_options, record.outputs, record.usage, record.dspy_cost, record.cost_details,
                       error, record.cache_hit, record.response_model, size)
        except AttributeError:  # a record finished without the hooks' parts
            slot[:] = (record.id, record.model, *(getattr(record, name, None) for name in _PARTS), error,
                       record.cache_hit, record.response_model, size)
        ring.append(slot)
        payloads[record.id] = slot
        self.payload_bytes += size

    def _dropped_for_size(self, call_id: int) -> None:
        drops = self._size_drops
        if len(drops) >= SIZE_DROPS_REMEMBERED:
            self._size_dropped.discard(drops.popleft())
        drops.append(call_id)
        self._size_dropped.add(call_id)

    def _new_cell(self, record: CallRecord) -> Counters:
        cell = self.cells[(record.path, record.model)] = Counters()
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

    def add_retry(self, record: CallRecord) -> None:
        record.retries += 1

    # --- evaluations, compiles, tools: rare events ----------------------------------

    def scope_start(self, kind: str, scope_id: str, info: dict[str, Any]) -> None:
        """An evaluation or a compile began; its LM calls are counted apart from now on."""
        state = {"kind": kind, "id": scope_id, "start": self._clock(), "end": None, "state": "running", **info}
        with self.lock:
            self._fold_locked()
            self.scopes[scope_id] = state
            self.scope_counters[scope_id] = Counters()
            self._trim_scopes()
            self.version += 1
            self._enqueue({"t": EVAL_START if kind == "eval" else COMPILE_START, **state}, droppable=False)

    def eval_progress(self, scope_id: str, done: int, score_sum: float) -> None:
        """Per example, from the thread driving the evaluation: the latest value wins, no lock.

        Folding puts it into the scope's state (sent in every `stats`); viewers also get one
        `eval_progress` event per scope per drain, not one per example."""
        self._progress[scope_id] = (done, score_sum)

    def _apply_progress(self) -> None:
        for scope_id, (done, score_sum) in list(self._progress.items()):
            state = self.scopes.get(scope_id)
            if state is None or state["state"] != "running":
                self._progress.pop(scope_id, None)
                continue
            if state.get("done") != done or state.get("score_sum") != score_sum:
                state["done"] = done
                state["score_sum"] = score_sum
                self.version += 1
                self._progress_unsent.add(scope_id)

    def scope_end(self, scope_id: str, info: dict[str, Any]) -> None:
        with self.lock:
            self._fold_locked()  # its calls that finished before it ended count in its usage
            self._progress.pop(scope_id, None)
            self._progress_unsent.discard(scope_id)  # the end message carries the final progress
            state = self.scopes.get(scope_id)
            if state is None:
                return
            state.update(info)
            state["end"] = self._clock()
            if state["state"] == "running":
                state["state"] = "failed" if info.get("error") else "done"
            self.version += 1
            self._enqueue({
                "t": EVAL_END if state["kind"] == "eval" else COMPILE_END,
                **state, "usage": self._scope_usage(scope_id, self._in_flight()[3]),
            }, droppable=False)

    def tool(self, name: str, path: str, duration: float, error: BaseException | None) -> None:
        self.pending.append((name, path, self._clock() - duration, duration,
                             type(error).__name__ if error is not None else None))

    def _apply_tool(self, name: str, path: str, start: float, duration: float, error: str | None) -> None:
        self.tool_calls += 1
        if error is not None:
            self.tool_errors += 1
        self.version += 1
        self._enqueue({"t": TOOL, "name": name, "path": path, "start": start, "latency": duration, "error": error},
                      droppable=True)

    def _enqueue(self, event: dict[str, Any], droppable: bool) -> None:
        """Queue one event for viewers; call with the lock held. Rare events are never dropped."""
        self.sequence += 1
        if droppable and len(self.events) >= self.queue_capacity:
            self.dropped_events += 1
            return
        event["seq"] = self.sequence
        self.events.append(event)

    def budget_alert(self, alert: dict[str, Any]) -> None:
        """A budget threshold was crossed (or a stop requested): kept for late viewers, sent now.

        Each alert goes out once: the same one again (a viewer asking to stop 20,000 times)
        counts in the first one's `repeats`; past MAX_ALERTS distinct ones, `alerts_dropped`."""
        alert = {"at": self._clock(), **alert}
        with self.lock:
            self._fold_locked()
            if self.budget is None:
                self.budget = {"on_exceed": None, "limits": [], "alerts": []}
            alerts = self.budget["alerts"]
            identity = _alert_identity(alert)
            for kept in alerts:
                if _alert_identity(kept) == identity:
                    kept["repeats"] = kept.get("repeats", 0) + 1
                    self.version += 1
                    return
            if len(alerts) >= MAX_ALERTS:
                self.budget["alerts_dropped"] = self.budget.get("alerts_dropped", 0) + 1
                self.version += 1
                return
            alerts.append(alert)
            self.version += 1
            self._enqueue({"t": BUDGET, **alert}, droppable=False)

    def count_internal_error(self) -> None:
        # Unlocked on purpose: this runs from except blocks, where taking the lock
        # could deadlock if the failure happened while holding it.
        self.internal_errors += 1

    def _trim_scopes(self) -> None:
        if len(self.scopes) <= MAX_SCOPES:
            return
        for scope_id in [s for s, state in self.scopes.items() if state["state"] != "running"]:
            del self.scopes[scope_id]
            self.scope_counters.pop(scope_id, None)
            if len(self.scopes) <= MAX_SCOPES:
                return

    # --- the serving side ---------------------------------------------------------------

    def drain(self) -> list[dict[str, Any] | tuple]:
        """Take every queued event (the queue is bounded), oldest first: call events as
        protocol.CALL_FIELDS rows (tuples), every other event as its message map (with `seq`)."""
        with self.lock:
            return self._drain_locked()

    def _drain_locked(self) -> list[dict[str, Any] | tuple]:
        self._fold_locked()
        for scope_id in self._progress_unsent:
            state = self.scopes.get(scope_id)
            if state is None:
                continue
            self._enqueue({"t": EVAL_PROGRESS, "id": scope_id, "done": state["done"],
                           "score_sum": state["score_sum"]}, droppable=True)
        self._progress_unsent.clear()
        events = list(self.events)
        self.events.clear()
        return events

    def drain_and_snapshot(self) -> tuple[list[dict[str, Any] | tuple], dict[str, Any]]:
        """`drain()` and `snapshot()` at one instant (its calls as `rows`): every drained event
        is in the snapshot and every later event is not, so a viewer attaching gets each once."""
        with self.lock:
            events = self._drain_locked()
            return events, self._snapshot_locked()

    def drain_and_stats(self) -> tuple[list[dict[str, Any] | tuple], dict[str, Any]]:
        """`drain()` and `stats()` at one instant: the counters cover exactly the drained events and
        those before them, so a stream (a recording) can add any later call event to them without
        counting it twice."""
        with self.lock:
            events = self._drain_locked()
            return events, self._stats_locked()

    def stats(self) -> dict[str, Any]:
        """Every exact counter, as sent in `stats` frames."""
        with self.lock:
            self._fold_locked()
            return self._stats_locked()

    def _stats_locked(self, all_scopes: bool = False) -> dict[str, Any]:
        totals = Counters()
        modules: dict[str, Counters] = {}
        models: dict[str, Counters] = {}
        for (path, model), cell in self.cells.items():
            totals.add(cell)
            module = _counters_of(modules, path, by_model=True)
            module.add(cell)
            if cell.prompt_tokens or cell.completion_tokens:
                # Billed tokens per model, so a viewer can re-price a module with its own prices.
                module.by_model[model] = [cell.prompt_tokens, cell.completion_tokens, cell.cached_tokens]
            _counters_of(models, model).add(cell)
        totals.in_flight, module_flight, model_flight, scope_flight = self._in_flight()
        for path, count in module_flight.items():
            _counters_of(modules, path, by_model=True).in_flight = count
        for model, count in model_flight.items():
            _counters_of(models, model).in_flight = count
        models, models_folded = _fold_rare(models, MAX_MODELS)
        modules, modules_folded = _fold_rare(modules, MAX_MODULES)
        if models_folded:
            for counters in modules.values():
                _fold_by_model(counters, models)
        scopes = [state for state in self.scopes.values() if all_scopes or state["state"] == "running"]
        stats = {
            "at": self._clock(),
            "totals": totals.to_wire(),
            "modules": [{"path": path, **self.module_info.get(path, _NO_INFO), **counters.to_wire()}
                        for path, counters in modules.items()],
            "models": [{"model": model, **counters.to_wire()} for model, counters in models.items()],
            "scopes": [{**state, "usage": self._scope_usage(state["id"], scope_flight)}
                       for state in scopes[-MAX_SCOPES:]],
            "dropped_events": self.dropped_events,
            "internal_errors": self.internal_errors,
            "tool_calls": self.tool_calls,
            "tool_errors": self.tool_errors,
            # A copy: the guard appends alerts from the job's threads while a frame is built.
            "budget": None if self.budget is None else {
                **self.budget, "alerts": [dict(alert) for alert in self.budget["alerts"]]},
            **({"before_attach": self.before_attach} if self.before_attach is not None else {}),
        }
        for entries, folded in ((stats["modules"], modules_folded), (stats["models"], models_folded)):
            if folded:
                entries[-1]["folded"] = folded
        if len(scopes) > MAX_SCOPES:
            stats["scopes_omitted"] = len(scopes) - MAX_SCOPES
        return stats

    def _in_flight(self) -> tuple[int, dict[str, int], dict[str, int], dict[str, int]]:
        """Calls in flight: in all, per module path, per model and per scope."""
        active = self.active.copy()  # one C call: safe while job threads add and remove
        modules: dict[str, int] = {}
        models: dict[str, int] = {}
        scopes: dict[str, int] = {}
        for record in active.values():
            path = record.path
            if path is None:
                path = self._name(record)
            modules[path] = modules.get(path, 0) + 1
            models[record.model] = models.get(record.model, 0) + 1
            for scope in record.scopes:
                scopes[scope] = scopes.get(scope, 0) + 1
            if path not in self.module_info:
                self.module_info[path] = {"class": record.module_class, "chain": list(record.chain)}
        return len(active), modules, models, scopes

    def _scope_usage(self, scope_id: str, in_flight: dict[str, int]) -> dict[str, Any] | None:
        counters = self.scope_counters.get(scope_id)
        if counters is None:
            return None
        usage = counters.to_wire()
        usage["in_flight"] = in_flight.get(scope_id, 0)
        return usage

    def spent_usd(self, kind: str, name: str = "") -> float:
        """Billed cost so far in all (`total`), of one module path (`module`) or one model (`model`)."""
        with self.lock:
            self._fold_locked()
            if kind == "total":
                return sum(cell.cost_usd for cell in self.cells.values())
            index = 0 if kind == "module" else 1
            return sum(cell.cost_usd for key, cell in self.cells.items() if key[index] == name)

    def snapshot(self) -> dict[str, Any]:
        """Everything a late viewer needs to catch up: stats, recent calls, every kept scope."""
        with self.lock:
            self._fold_locked()
            snapshot = self._snapshot_locked()
        return {"stats": snapshot["stats"], "calls": call_dicts(CALL_FIELDS, snapshot["rows"]), "seq": snapshot["seq"]}

    def _snapshot_locked(self) -> dict[str, Any]:
        """As `snapshot()`, the recent calls as rows (protocol.CALL_FIELDS)."""
        return {"stats": self._stats_locked(all_scopes=True), "rows": list(self.recent), "seq": self.sequence}

    def add_before_attach(self, model: str | None, counters: Counters | None, summary: dict[str, Any]) -> None:
        """Calls DSPy's history recorded before `dspy-top attach`: they join the totals in a
        `(before attach)` cell of their model (never the call stream); `summary` goes out in `stats`."""
        with self.lock:
            if counters is not None:
                key = (BEFORE_ATTACH, str(model))
                cell = self.cells.get(key)
                if cell is None:
                    cell = self.cells[key] = Counters()
                    self.module_info.setdefault(BEFORE_ATTACH, {"class": "DSPy history", "chain": []})
                cell.add(counters)
            self.before_attach = summary
            self.version += 1

    def payloads_of(self, call_ids: list[int]) -> list[KeptCall | None]:
        """`payload()` of each id, under one lock (None for a call the ring no longer holds)."""
        with self.lock:
            self._fold_locked()
            where = self.payloads.get
            return [None if (slot := where(call_id)) is None else KeptCall(slot) for call_id in call_ids]

    def payload(self, call_id: int) -> KeptCall | None:
        """A recent call kept with `keep=True`: the source of its full payload (payload.materialize)."""
        with self.lock:
            self._fold_locked()
            slot = self.payloads.get(call_id)
            return None if slot is None else KeptCall(slot)

    def payload_missing_reason(self, call_id: int) -> str | None:
        """Why `payload(call_id)` found nothing, when it is not the usual (older than the last calls kept)."""
        if call_id in self._size_dropped:
            return (f"dropped to keep this process's payloads under {self.history_bytes / 2**20:g} MiB "
                    "(DSPY_TOP_HISTORY_BYTES)")
        return None


_NO_INFO = {"class": "", "chain": []}


def _fold_rare(table: dict[str, Counters], limit: int) -> tuple[dict[str, Counters], int]:
    """At most `limit` entries: the busiest, then OTHER summing the rest. (table, how many OTHER holds)."""
    if len(table) <= limit:
        return table, 0
    ranked = sorted(table.items(), key=lambda item: item[1].calls + item[1].in_flight, reverse=True)
    kept = dict(ranked[:limit - 1])
    other = Counters()
    if any(counters.by_model is not None for _, counters in ranked):
        other.by_model = {}
    for _, counters in ranked[limit - 1:]:
        other.add(counters)
        other.in_flight += counters.in_flight
        for model, cell in (counters.by_model or {}).items():
            _add_cell(other.by_model, model, cell)
    kept[OTHER] = other
    return kept, len(ranked) - (limit - 1)


def _fold_by_model(counters: Counters, models: dict[str, Counters]) -> None:
    """A module's per-model tokens, with the models folded into OTHER summed there too."""
    if not counters.by_model:
        return
    by_model: dict[str, list[int]] = {}
    for model, cell in counters.by_model.items():
        _add_cell(by_model, model if model in models else OTHER, cell)
    counters.by_model = by_model


def _add_cell(table: dict[str, list[int]], model: str, cell: list[int]) -> None:
    kept = table.get(model)
    table[model] = list(cell) if kept is None else [a + b for a, b in zip(kept, cell)]


def _alert_identity(alert: dict[str, Any]) -> tuple:
    return alert.get("level"), alert.get("scope"), alert.get("name"), alert.get("message")


def _counters_of(table: dict[str, Counters], key: str, by_model: bool = False) -> Counters:
    counters = table.get(key)
    if counters is None:
        counters = table[key] = Counters()
        if by_model:
            counters.by_model = {}
    return counters


def _describe_error(error: BaseException) -> tuple[str, str]:
    """(type name, message cut short): all a row and a payload keep of the program's exception."""
    return type(error).__name__, _error_text(error)


def _short(text: str, limit: int = 500) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _error_text(error: BaseException) -> str:
    """An exception's message, cut short; one whose `__str__` fails still gets a row."""
    try:
        return _short(str(error))
    except Exception:
        return f"<{type(error).__name__}: message unavailable>"
