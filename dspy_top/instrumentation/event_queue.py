"""The recorder's event queue: what viewers are sent, numbered, bounded (drop and count), drained by the server.

A part of `Recorder` (recorder.py), kept in its own file: `events`, `sequence` and `dropped_events` are the
recorder's, made in `Recorder.reset`; call events are appended by its fold, as CALL_FIELDS rows. A snapshot is
taken with a drain, at one instant, so a viewer attaching mid-stream sees each event once.
"""

from __future__ import annotations

from typing import Any

from dspy_top.protocol import CALL_FIELDS, EVAL_PROGRESS, call_dicts

DEFAULT_QUEUE = 10_000


class EventQueue:
    """Queue, drain and snapshot: the serving side of the recorder."""

    def _enqueue(self, event: dict[str, Any], droppable: bool) -> None:
        """Queue one event for viewers; call with the lock held. Rare events are never dropped."""
        self.sequence += 1
        if droppable and len(self.events) >= self.queue_capacity:
            self.dropped_events += 1
            return
        event["seq"] = self.sequence
        self.events.append(event)

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
            self._enqueue(
                {"t": EVAL_PROGRESS, "id": scope_id, "done": state["done"], "score_sum": state["score_sum"]},
                droppable=True,
            )
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

    def snapshot(self) -> dict[str, Any]:
        """Everything a late viewer needs to catch up: stats, recent calls, every kept scope."""
        with self.lock:
            self._fold_locked()
            snapshot = self._snapshot_locked()
        return {"stats": snapshot["stats"], "calls": call_dicts(CALL_FIELDS, snapshot["rows"]), "seq": snapshot["seq"]}

    def _snapshot_locked(self) -> dict[str, Any]:
        """As `snapshot()`, the recent calls as rows (protocol.CALL_FIELDS)."""
        return {"stats": self._stats_locked(all_scopes=True), "rows": list(self.recent), "seq": self.sequence}
