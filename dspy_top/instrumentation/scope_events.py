"""The recorder's rare events: evaluations and compiles (scopes), their progress, tools and budget alerts.

A part of `Recorder` (recorder.py), kept in its own file: the state it reads (`scopes`, `scope_counters`, the lock,
the event queue) is the recorder's, made in `Recorder.reset`. Each event folds the hot path's pending calls first,
so a scope's usage counts exactly the calls that finished inside it.
"""

from __future__ import annotations

from typing import Any

from dspy_top.instrumentation.tally import Tally
from dspy_top.protocol import BUDGET, COMPILE_END, COMPILE_START, EVAL_END, EVAL_START, TOOL

# Finished evaluations and compiles kept for late viewers; running ones are always kept
# (a frame lists at most this many, the newest).
MAX_SCOPES = 500
# Budget alerts kept (and sent in every stats frame); a repeat of one (the same stop
# request again) counts on the first instead of adding another.
MAX_ALERTS = 50


class ScopeEvents:
    """Evaluations, compiles, tools and budget alerts: the events that are not LM calls."""

    def scope_start(self, kind: str, scope_id: str, info: dict[str, Any]) -> None:
        """An evaluation or a compile began; its LM calls are counted apart from now on."""
        state = {"kind": kind, "id": scope_id, "start": self._clock(), "end": None, "state": "running", **info}
        with self.lock:
            self._fold_locked()
            self.scopes[scope_id] = state
            self.scope_counters[scope_id] = Tally()
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
            self._enqueue(
                {
                    "t": EVAL_END if state["kind"] == "eval" else COMPILE_END,
                    **state,
                    "usage": self._scope_usage(scope_id, self._in_flight()[3]),
                },
                droppable=False,
            )

    def tool(self, name: str, path: str, duration: float, error: BaseException | None) -> None:
        self.pending.append(
            (name, path, self._clock() - duration, duration, type(error).__name__ if error is not None else None)
        )

    def _apply_tool(self, name: str, path: str, start: float, duration: float, error: str | None) -> None:
        self.tool_calls += 1
        if error is not None:
            self.tool_errors += 1
        self.version += 1
        self._enqueue(
            {"t": TOOL, "name": name, "path": path, "start": start, "latency": duration, "error": error}, droppable=True
        )

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

    def _trim_scopes(self) -> None:
        if len(self.scopes) <= MAX_SCOPES:
            return
        for scope_id in [s for s, state in self.scopes.items() if state["state"] != "running"]:
            del self.scopes[scope_id]
            self.scope_counters.pop(scope_id, None)
            if len(self.scopes) <= MAX_SCOPES:
                return


def _alert_identity(alert: dict[str, Any]) -> tuple:
    return alert.get("level"), alert.get("scope"), alert.get("name"), alert.get("message")
