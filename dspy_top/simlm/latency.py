"""How long the simulated LM takes: a realistic, per-request deterministic delay.

    time_to_first_token = 0.30 s * jitter + 0.02 ms per prompt token
    generation          = 2 ms per completion token * jitter
    jitter              = exp(0.35 * z), z a standard normal drawn from the request hash
                          (lognormal, so a few calls are much slower than the median)

Both are multiplied by ``latency_scale``; 0 means no sleep at all.
"""

import math
from dataclasses import dataclass
from statistics import NormalDist

from dspy_top.simlm.draws import unit

BASE_SECONDS = 0.30
PER_PROMPT_TOKEN_SECONDS = 0.00002
PER_COMPLETION_TOKEN_SECONDS = 0.002
JITTER_SIGMA = 0.35
# Failures come back quickly, as an overloaded gateway's do.
ERROR_SECONDS = 0.05

_STANDARD_NORMAL = NormalDist()


@dataclass(frozen=True)
class LatencyPlan:
    """Seconds to wait before the first byte, and in total while generating."""

    first_token: float
    generation: float

    @property
    def total(self) -> float:
        return self.first_token + self.generation


def _jitter(digest: str, label: str) -> float:
    # Clamp the uniform draw so the tail stays finite (|z| <= ~3.7).
    u = min(max(unit(digest, label), 1e-4), 1 - 1e-4)
    return math.exp(JITTER_SIGMA * _STANDARD_NORMAL.inv_cdf(u))


def plan_latency(digest: str, prompt_tokens: int, completion_tokens: int, scale: float) -> LatencyPlan:
    if scale <= 0:
        return LatencyPlan(0.0, 0.0)
    first = (BASE_SECONDS * _jitter(digest, "ttft") + PER_PROMPT_TOKEN_SECONDS * prompt_tokens) * scale
    generation = PER_COMPLETION_TOKEN_SECONDS * completion_tokens * _jitter(digest, "tps") * scale
    return LatencyPlan(first, generation)


def error_latency(scale: float) -> float:
    return ERROR_SECONDS * scale
