"""The state a recording's checkpoints hold: what a viewer needs to start at that moment.

Folded from the protocol messages themselves: the latest `stats` (exact counters), every
evaluation and compile as its messages left it, the last sequence number, how many call
events and payloads the file holds, and the process's `exit`. The writer folds what it
writes and stores the state in each checkpoint; the reader folds a checkpoint and the
messages after it into the end state. Standard library only.
"""

from __future__ import annotations

from typing import Any, Iterable

# Finished evaluations kept in a checkpoint (the oldest go first; running ones and compiles
# are always kept). Bounds a checkpoint of a GEPA run with thousands of evaluations; the
# messages in the file still hold every one.
MAX_FINISHED_EVALS = 2000
_SCOPE_START = ("eval_start", "compile_start")
_SCOPE_END = ("eval_end", "compile_end")
_NOT_STATE = ("t", "seq")


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

    # --- folding ----------------------------------------------------------------------

    def apply(self, message: dict[str, Any]) -> None:
        """Fold one protocol message (or a `recording` note) into the state."""
        kind = message.get("t")
        seq = message.get("seq")
        if type(seq) is int and seq > self.seq:
            self.seq = seq
        if kind == "calls":
            rows = message.get("rows") or ()
            self.calls += len(rows)
            if rows:
                fields = list(message.get("fields") or ())
                if "seq" in fields:
                    last = rows[-1][fields.index("seq")]
                    if type(last) is int and last > self.seq:
                        self.seq = last
            return
        if kind == "call":
            self.calls += 1
        elif kind == "stats":
            self._take_stats(message)
        elif kind in _SCOPE_START or kind in _SCOPE_END:
            self._put_scope(message, replace=True)
        elif kind == "eval_progress":
            scope = self.scopes.get(message.get("id"))
            if scope is not None:
                scope.update(done=message.get("done"), score_sum=message.get("score_sum"))
        elif kind == "snapshot":
            if isinstance(message.get("stats"), dict):
                self._take_stats(message["stats"])
            self.calls += len(message.get("calls") or ())
        elif kind == "exit":
            self.exit = {k: v for k, v in message.items() if k != "t"}
            if isinstance(message.get("stats"), dict):
                self._take_stats(message["stats"])
        elif kind == "recording":
            self.notes.append({k: v for k, v in message.items() if k != "t"})
        at = message.get("at")
        if isinstance(at, (int, float)) and at > self.at:
            self.at = float(at)

    def apply_all(self, messages: Iterable[dict[str, Any]]) -> None:
        for message in messages:
            self.apply(message)

    def _take_stats(self, stats: dict[str, Any]) -> None:
        self.stats = {k: v for k, v in stats.items() if k != "t"}
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

    # --- stored form ------------------------------------------------------------------

    def checkpoint(self) -> dict[str, Any]:
        """The state as a checkpoint frame stores it."""
        return {
            "at": self.at, "seq": self.seq, "calls": self.calls, "payloads": self.payloads,
            "payloads_dropped": self.payloads_dropped, "calls_dropped": self.calls_dropped,
            "stats": self.stats, "scopes": list(self.scopes.values()), "exit": self.exit, "notes": list(self.notes),
        }

    @classmethod
    def from_checkpoint(cls, stored: dict[str, Any]) -> "RecordingState":
        state = cls()
        state.at = float(stored.get("at") or 0.0)
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
        return state

    def snapshot(self, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """A protocol `snapshot` message for a viewer starting here: stats with every kept scope."""
        stats = dict(self.stats or {})
        stats["scopes"] = [dict(scope) for scope in self.scopes.values()]
        return {"t": "snapshot", "stats": stats, "calls": list(calls or ()), "seq": self.seq}


def _finished_eval(scope: dict[str, Any]) -> bool:
    return scope.get("kind") == "eval" and scope.get("state") not in (None, "running")
