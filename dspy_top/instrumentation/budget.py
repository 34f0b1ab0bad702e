"""The budget guard: warns at 80% and 100% of a budget and, if asked, refuses further LM calls.

It acts where DSPy cannot swallow it: before the next LM call starts, by raising
`BudgetExceeded` (a BaseException) on the calling thread. Calls already in flight on other
threads finish and are counted. A viewer's stop request works the same way.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from dspy_top.budget_levels import ON_EXCEED, WARN_AT
from dspy_top.errors import BudgetExceeded, BudgetStop
from dspy_top.instrumentation.call_record import CallRecord
from dspy_top.instrumentation.recorder import Recorder
from dspy_top.pricing import usd


class Guard:
    """Budgets for the whole process, per module path and per model, in USD billed."""

    def __init__(
        self,
        recorder: Recorder,
        total_usd: float | None = None,
        on_exceed: str = "warn",
        modules: dict[str, float] | None = None,
        models: dict[str, float] | None = None,
    ) -> None:
        if on_exceed not in ON_EXCEED:
            raise ValueError(f"on_exceed must be one of {ON_EXCEED}, not {on_exceed!r}")
        self.recorder = recorder
        self.on_exceed = on_exceed
        self.limits: dict[tuple[str, str], float] = {}
        if total_usd is not None:
            self.limits[("total", "")] = float(total_usd)
        for path, limit in (modules or {}).items():
            self.limits[("module", path)] = float(limit)
        for model, limit in (models or {}).items():
            self.limits[("model", model)] = float(limit)
        self._fired: set[tuple[str, str, float]] = set()
        self._spent_scopes: dict[tuple[str, str], str] = {}  # scope -> message, once crossed
        self._stop_reason: str | None = None
        self._lock = threading.Lock()
        recorder.budget = self.describe()

    def describe(self) -> dict[str, Any]:
        return {
            "on_exceed": self.on_exceed,
            "alerts": [],
            "limits": [{"scope": kind, "name": name, "usd": limit} for (kind, name), limit in self.limits.items()],
        }

    # --- called from the hooks ------------------------------------------------------

    def before_call(self, path: str, model: str) -> None:
        """Raise if this call may not start; otherwise return at once."""
        if self._stop_reason is not None:
            raise BudgetStop(f"dspy-top: {self._stop_reason}")
        if not self._spent_scopes or self.on_exceed == "warn":
            return
        for key in (("total", ""), ("module", path), ("model", model)):
            message = self._spent_scopes.get(key)
            if message is not None:
                limit = self.limits[key]
                error = BudgetStop if self.on_exceed == "stop" else BudgetExceeded
                raise error(message, spent_usd=self._spent(key), budget_usd=limit, scope=_label(key))

    def after_call(self, record: CallRecord) -> None:
        if not self.limits:
            return
        # spent_usd folds first, so spend includes this call: budgets cost a lock per call.
        for key in (("total", ""), ("module", record.path), ("model", record.model)):
            limit = self.limits.get(key)
            if limit is None:
                continue
            spent = self._spent(key)
            for level in (WARN_AT, 1.0):
                if spent >= limit * level and (key[0], key[1], level) not in self._fired:
                    self._fire(key, level, spent, limit)

    def request_stop(self, reason: str) -> None:
        """A viewer asked the job to stop: the next LM call ends the run."""
        self._stop_reason = reason
        self._alert({"level": "stop", "scope": "viewer", "message": f"dspy-top: {reason}"})

    @staticmethod
    def is_budget_error(exc: BaseException) -> bool:
        return isinstance(exc, BudgetExceeded)

    # --- inside -----------------------------------------------------------------------

    def _spent(self, key: tuple[str, str]) -> float:
        return self.recorder.spent_usd(*key)

    def _fire(self, key: tuple[str, str], level: float, spent: float, limit: float) -> None:
        with self._lock:
            marker = (key[0], key[1], level)
            if marker in self._fired:
                return
            self._fired.add(marker)
            label = _label(key)
            if level >= 1.0:
                action = {
                    "warn": "carrying on (on_exceed='warn')",
                    "raise": "further LM calls raise dspy_top.BudgetExceeded",
                    "stop": "the run stops at its next LM call",
                }[self.on_exceed]
                spent_text = f"dspy-top: {label} budget {usd(limit)} spent ({usd(spent)})"
                message = f"{spent_text}; {action}"
                # What the refused call raises (for `stop`, what the run ends with).
                self._spent_scopes[key] = f"{spent_text}; stopped the run" if self.on_exceed == "stop" else message
            else:
                message = f"dspy-top: {label} spend {usd(spent)} passed {int(level * 100)}% of its {usd(limit)} budget"
        # One write for the line and its newline: two threads crossing a limit at once must not
        # print into each other's line (print writes the end separately).
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
        self._alert(
            {
                "level": int(level * 100),
                "scope": key[0],
                "name": key[1],
                "spent_usd": spent,
                "budget_usd": limit,
                "action": self.on_exceed,
                "message": message,
            }
        )

    def _alert(self, alert: dict[str, Any]) -> None:
        self.recorder.budget_alert(alert)


def _label(key: tuple[str, str]) -> str:
    kind, name = key
    return "total" if kind == "total" else f"{kind} {name}"
