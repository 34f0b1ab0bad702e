"""Which completion requests the simulated LM fails on purpose, and what the failure says.

Decisions are deterministic: ``error_every`` counts requests since start/reset, and
``error_rate`` hashes (seed, request, how many times this same request was seen), so
a retry of a failed request is a fresh draw rather than a guaranteed repeat failure.
"""

import threading

from dspy_top.simlm.config import SimConfig
from dspy_top.simlm.draws import unit

# Forget per-request attempt counts past this many distinct prompts to bound memory.
_MAX_TRACKED_PROMPTS = 100_000

_ERROR_KINDS = {
    429: ("rate_limit_exceeded", "requests", "Rate limit reached for the simulated model; retry shortly."),
    500: ("server_error", "server_error", "The simulated server had an internal error; retry the request."),
    502: ("bad_gateway", "server_error", "Bad gateway from the simulated upstream; retry the request."),
    503: ("service_unavailable", "server_error", "The simulated model is overloaded; retry the request."),
    504: ("gateway_timeout", "server_error", "The simulated upstream timed out; retry the request."),
}

# Retry hints that make DSPy retry at once instead of sleeping min(2**attempt, 60) s.
# Retry-After: 0 is the one that matters: the native engine (lm15) reads it (then
# retry-after-ms), and the LiteLLM engine reads it off the SDK error (never
# retry-after-ms). retry-after-ms: 1 serves clients relying on the OpenAI SDK's own
# retries, which ignore a zero delay.
RETRY_NOW_HEADERS = (("Retry-After", "0"), ("retry-after-ms", "1"))


class FaultInjector:
    """Counts completion requests and says which ones fail. Thread-safe."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sequence = 0
        self._attempts: dict[str, int] = {}

    def should_fail(self, digest: str, config: SimConfig) -> bool:
        with self._lock:
            self._sequence += 1
            sequence = self._sequence
            if len(self._attempts) >= _MAX_TRACKED_PROMPTS:
                self._attempts.clear()
            attempt = self._attempts.get(digest, 0)
            self._attempts[digest] = attempt + 1
        if config.error_every and sequence % config.error_every == 0:
            return True
        if config.error_rate > 0:
            return unit(f"{config.error_seed}:{digest}", f"fault:{attempt}") < config.error_rate
        return False

    def reset(self):
        with self._lock:
            self._sequence = 0
            self._attempts.clear()


def error_body(status: int) -> dict:
    """An OpenAI-shaped error object, so SDKs classify it as they would a real one."""
    code, kind, message = _ERROR_KINDS.get(status, _ERROR_KINDS[503])
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
