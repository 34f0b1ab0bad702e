"""The state a recording's checkpoints hold: what a viewer needs to start at that moment.

Folded from the protocol messages themselves: the latest `stats` (exact counters), every
evaluation and compile as its messages left it, the last sequence number, how many call
events and payloads the file holds, and the process's `exit`. The writer folds what it
writes and stores the state in each checkpoint; the reader folds a checkpoint and the
messages after it into the end state.

A `stats` covers exactly the call events before it in the stream (the server drains both
under one lock), so the call events after the latest one (`tail`) are added to its totals:
`totals()` is exact up to the last call stored, also in a file whose writer was killed
between two stats. The tail is summed only when asked (a checkpoint, the end state), never
per call while writing. Standard library only (and dspy_top.latency, itself pure).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dspy_top.latency import bucket_of
from dspy_top.protocol import (
    CALL,
    CALLS,
    COMPILE_END,
    COMPILE_START,
    COUNTER_FIELDS,
    EVAL_END,
    EVAL_PROGRESS,
    EVAL_START,
    EXIT,
    SNAPSHOT,
    STATS,
)
from dspy_top.recording.checked import amount, finite, moment

# Finished evaluations kept in a checkpoint (the oldest go first; running ones and compiles
# are always kept). Bounds a checkpoint of a GEPA run with thousands of evaluations; the
# messages in the file still hold every one.
MAX_FINISHED_EVALS = 2000
_SCOPE_START = (EVAL_START, COMPILE_START)
_SCOPE_END = (EVAL_END, COMPILE_END)
_NOT_STATE = ("t", "seq")
# The totals a call event adds to (the rest of a `stats` is as the latest one left it).
TAIL_COUNTERS = tuple(name for name in COUNTER_FIELDS if name != "in_flight")


class RecordingState:
    """A fold of the messages written so far; `checkpoint()` is its stored form."""

    def __init__(self) -> None:
        self.stats: dict[str, Any] | None = None  # the latest `stats` (or snapshot/exit stats), without `t`
        self.scopes: dict[str, dict[str, Any]] = {}  # scope id -> state, as in `stats.scopes`
        self.seq = 0  # the highest event sequence number seen
        self.calls = 0  # call events in the file (rows of `calls`, `call` messages, snapshot calls)
        self.payloads = 0  # payloads in the file
        self.payloads_dropped = 0  # payloads not stored (past the size cap, or too large)
        self.calls_dropped = 0  # call events not stored (past the hard cap)
        self.exit: dict[str, Any] | None = None
        self.notes: list[dict[str, Any]] = []  # `recording` messages: caps reached, failures
        self.at = 0.0  # the time of the latest message with one
        self._finished_evals = 0
        self._tail: dict[str, Any] = {}  # call events after the latest stats, summed
        self._unsummed: list[tuple[Any, Any]] = []  # (fields, rows) of `calls` not summed yet

    # --- folding ----------------------------------------------------------------------

    def apply(self, message: dict[str, Any]) -> None:
        """Fold one protocol message (or a `recording` note) into the state."""
        kind = message.get("t")
        seq = message.get("seq")
        if type(seq) is int and seq > self.seq:
            self.seq = seq
        if kind == CALLS:
            rows = message.get("rows") or ()
            self.calls += len(rows)
            if rows:
                fields = message.get("fields") or ()
                self._unsummed.append((fields, rows))
                fields = list(fields)
                if "seq" in fields:
                    last = rows[-1][fields.index("seq")]
                    if type(last) is int and last > self.seq:
                        self.seq = last
            return
        if kind == CALL:
            self.calls += 1
            self._unsummed.append((None, (message,)))
        elif kind == STATS:
            self._take_stats(message)
        elif kind in _SCOPE_START or kind in _SCOPE_END:
            self._put_scope(message, replace=True)
        elif kind == EVAL_PROGRESS:
            scope = self.scopes.get(message.get("id"))
            if scope is not None:
                scope.update(done=message.get("done"), score_sum=message.get("score_sum"))
        elif kind == SNAPSHOT:
            if isinstance(message.get("stats"), dict):
                self._take_stats(message["stats"])
            self.calls += len(message.get("calls") or ())
        elif kind == EXIT:
            self.exit = {k: v for k, v in message.items() if k != "t"}
            if isinstance(message.get("stats"), dict):
                self._take_stats(message["stats"])
        elif kind == "recording":
            self.notes.append({k: v for k, v in message.items() if k != "t"})
        at = moment(message.get("at"))
        if at is not None and at > self.at:
            self.at = at

    def apply_all(self, messages: Iterable[dict[str, Any]]) -> None:
        for message in messages:
            self.apply(message)

    def _take_stats(self, stats: dict[str, Any]) -> None:
        self.stats = {k: v for k, v in stats.items() if k != "t"}
        self._tail = {}  # these counters cover every call event so far
        self._unsummed = []
        for scope in stats.get("scopes") or ():
            if isinstance(scope, dict):
                self._put_scope(scope, replace=False)

    def _put_scope(self, message: dict[str, Any], replace: bool) -> None:
        scope_id = message.get("id")
        if not isinstance(scope_id, str):
            return
        state = {k: v for k, v in message.items() if k not in _NOT_STATE}
        known = self.scopes.get(scope_id)
        was_finished = known is not None and _finished_eval(known)
        if known is None or replace:
            self.scopes[scope_id] = state
        else:
            known.update(state)  # a `stats` entry: fresher usage and progress of a running scope
        now_finished = _finished_eval(self.scopes[scope_id])
        self._finished_evals += int(now_finished) - int(was_finished)
        if self._finished_evals > MAX_FINISHED_EVALS:
            self._trim()

    def _trim(self) -> None:
        for scope_id in [s for s, state in self.scopes.items() if _finished_eval(state)]:
            del self.scopes[scope_id]
            self._finished_evals -= 1
            if self._finished_evals <= MAX_FINISHED_EVALS:
                return

    # --- totals, exact to the last call ------------------------------------------------

    def tail(self) -> dict[str, Any]:
        """What the call events after the latest stats add to its totals ({} when none came)."""
        if self._unsummed:
            for fields, rows in self._unsummed:
                _sum_calls(self._tail, fields, rows)
            self._unsummed = []
        return self._tail

    def totals(self) -> dict[str, Any] | None:
        """The process's totals (the `stats.totals` counters) with the calls after the latest
        stats added; None when no stats came at all (unknown, never 0)."""
        if self.stats is None or not isinstance(self.stats.get("totals"), dict):
            return None
        totals = dict(self.stats["totals"])
        tail = self.tail()
        if not tail:
            return totals
        for name in TAIL_COUNTERS:
            if tail.get(name):
                base = totals.get(name)
                totals[name] = _number(base) + tail[name]
        stored = totals.get("latency_hist")
        hist = dict(stored) if isinstance(stored, dict) else {}
        for bucket, count in (tail.get("latency_hist") or {}).items():
            hist[bucket] = _number(hist.get(bucket)) + count
        totals["latency_hist"] = hist
        if tail.get("last_at", 0.0) > (moment(totals.get("last_at")) or 0.0):
            totals["last_at"] = tail["last_at"]
        return totals

    # --- stored form ------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """The state as a checkpoint frame stores it."""
        return {
            "at": self.at,
            "seq": self.seq,
            "calls": self.calls,
            "payloads": self.payloads,
            "payloads_dropped": self.payloads_dropped,
            "calls_dropped": self.calls_dropped,
            "stats": self.stats,
            "scopes": list(self.scopes.values()),
            "exit": self.exit,
            "notes": list(self.notes),
            "tail": dict(self.tail()) or None,
        }

    @classmethod
    def from_checkpoint(cls, stored: dict[str, Any]) -> RecordingState:
        state = cls()
        state.at = moment(stored.get("at"), 0.0)
        state.seq = int(stored.get("seq") or 0)
        state.calls = int(stored.get("calls") or 0)
        state.payloads = int(stored.get("payloads") or 0)
        state.payloads_dropped = int(stored.get("payloads_dropped") or 0)
        state.calls_dropped = int(stored.get("calls_dropped") or 0)
        state.stats = stored.get("stats") if isinstance(stored.get("stats"), dict) else None
        for scope in stored.get("scopes") or ():
            if isinstance(scope, dict) and isinstance(scope.get("id"), str):
                state.scopes[scope["id"]] = scope
        state._finished_evals = sum(1 for s in state.scopes.values() if _finished_eval(s))
        state.exit = stored.get("exit") if isinstance(stored.get("exit"), dict) else None
        state.notes = [n for n in stored.get("notes") or () if isinstance(n, dict)]
        tail = stored.get("tail")
        if isinstance(tail, dict) and state.stats is not None:
            state._tail = dict(tail)
        return state

    def snapshot(self, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A protocol `snapshot` message for a viewer starting here: stats with every kept scope."""
        stats = dict(self.stats or {})
        stats["scopes"] = [dict(scope) for scope in self.scopes.values()]
        return {"t": SNAPSHOT, "stats": stats, "calls": list(calls or ()), "seq": self.seq}


def _sum_calls(tail: dict[str, Any], fields: Any, rows: Any) -> None:
    """Add call events (rows with these column names, or `call` maps when `fields` is None) to
    `tail` as the process's counters add a finished call (instrumentation/recorder.py)."""
    if fields is not None:
        names = list(fields)
        rows = (dict(zip(names, row)) for row in rows)
    for call in rows:
        if not isinstance(call, dict):
            continue
        hit = bool(call.get("cache_hit"))
        latency = _number(call.get("latency"))
        _add(tail, "calls", 1)
        _add(tail, "retries", _number(call.get("retries")))
        _add(tail, "latency_s", latency)
        bucket = bucket_of(latency)
        hist = tail.setdefault("latency_hist", {})
        hist[bucket] = hist.get(bucket, 0) + 1
        ended = moment(_number(call.get("start")) + latency, 0.0)
        if ended > tail.get("last_at", 0.0):
            tail["last_at"] = ended
        if call.get("error"):
            _add(tail, "errors", 1)
        if hit:
            _add(tail, "cache_hits", 1)
            _add(tail, "cost_saved_usd", _number(call.get("cost_saved_usd")))
            continue
        if call.get("usage_known") is False:  # DSPy reported no usage: its tokens are not counted
            _add(tail, "unmetered_calls", 1)
        else:
            for name in ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens"):
                _add(tail, name, _number(call.get(name)))
        cost = call.get("cost_usd")
        if finite(cost):
            _add(tail, "cost_usd", cost)
        elif call.get("prompt_tokens") or call.get("completion_tokens"):
            _add(tail, "unpriced_calls", 1)


def _add(tail: dict[str, Any], name: str, amount: float) -> None:
    if amount:
        tail[name] = tail.get(name, 0) + amount


_number = amount


def _finished_eval(scope: dict[str, Any]) -> bool:
    return scope.get("kind") == "eval" and scope.get("state") not in (None, "running")
