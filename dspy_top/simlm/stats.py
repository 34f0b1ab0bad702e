"""The simulated LM's own ledger: what it was asked and billed, independent of any client.

Tests and demos compare this against what DSPy and the dspy-top viewer report.
Tokens are counted for successful responses only, as a provider bills.
"""

import threading
from collections import Counter


class _ModelLedger:
    __slots__ = ("requests", "ok", "failed", "prompt_tokens", "completion_tokens")

    def __init__(self):
        self.requests = 0
        self.ok = 0
        self.failed = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__slots__}


class SimStats:
    """Thread-safe counters over completion requests, readable as a JSON-ready dict."""

    def __init__(self):
        self._lock = threading.Lock()
        self._zero()
        self.in_flight = 0

    def _zero(self):
        self.requests = 0
        self.ok = 0
        self.failed_by_status: Counter = Counter()
        self.streaming = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cached_tokens = 0
        self.models: dict[str, _ModelLedger] = {}

    def _ledger(self, model: str) -> _ModelLedger:
        ledger = self.models.get(model)
        if ledger is None:
            ledger = self.models[model] = _ModelLedger()
        return ledger

    def request_started(self, model: str, streaming: bool):
        with self._lock:
            self.requests += 1
            self.in_flight += 1
            self._ledger(model).requests += 1
            if streaming:
                self.streaming += 1

    def request_succeeded(self, model: str, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0):
        with self._lock:
            self.ok += 1
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            self.cached_tokens += cached_tokens
            ledger = self._ledger(model)
            ledger.ok += 1
            ledger.prompt_tokens += prompt_tokens
            ledger.completion_tokens += completion_tokens

    def request_failed(self, model: str, status: int):
        with self._lock:
            self.failed_by_status[status] += 1
            self._ledger(model).failed += 1

    def request_finished(self):
        with self._lock:
            self.in_flight -= 1

    def reset(self):
        # in_flight describes open requests, not history, so it survives a reset.
        with self._lock:
            self._zero()

    def snapshot(self) -> dict:
        with self._lock:
            failed = sum(self.failed_by_status.values())
            return {
                "requests": self.requests,
                "ok": self.ok,
                "failed": failed,
                "failed_by_status": {str(status): n for status, n in sorted(self.failed_by_status.items())},
                "streaming": self.streaming,
                "in_flight": self.in_flight,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
                "cached_tokens": self.cached_tokens,
                "models": {model: ledger.as_dict() for model, ledger in sorted(self.models.items())},
            }
