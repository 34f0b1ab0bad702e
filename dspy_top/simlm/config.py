"""The simulated LM's run-time knobs, validated once and swapped whole (never mutated)."""

from dataclasses import asdict, dataclass, fields, replace

# Statuses a provider returns for transient trouble; DSPy retries all of them.
RETRYABLE_STATUSES = (429, 500, 502, 503, 504)


# JSON from POST /_sim/config arrives untyped; bools are ints in Python but not knobs.
def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class SimConfig:
    """How the simulated LM behaves.

    latency_scale:   multiplies every simulated delay; 0 answers at once.
    error_every:     the Nth, 2Nth, ... completion request after start/reset fails.
    error_rate:      each attempt fails with this probability, drawn from
                     hash(error_seed, request, attempt number of that request).
    error_seed:      varies which attempts error_rate picks.
    error_status:    the HTTP status of injected failures (429 or a 5xx).
    cached_fraction: share of prompt tokens reported as
                     usage.prompt_tokens_details.cached_tokens (0 leaves the field out).
    """

    latency_scale: float = 1.0
    error_every: int | None = None
    error_rate: float = 0.0
    error_seed: int = 0
    error_status: int = 503
    cached_fraction: float = 0.0

    def __post_init__(self):
        if not _is_number(self.latency_scale) or self.latency_scale < 0:
            raise ValueError("latency_scale must be a number >= 0")
        if self.error_every is not None and (not _is_int(self.error_every) or self.error_every < 1):
            raise ValueError("error_every must be a positive integer or None")
        if not _is_number(self.error_rate) or not 0 <= self.error_rate <= 1:
            raise ValueError("error_rate must be between 0 and 1")
        if not _is_int(self.error_seed):
            raise ValueError("error_seed must be an integer")
        if self.error_status not in RETRYABLE_STATUSES:
            raise ValueError(f"error_status must be one of {RETRYABLE_STATUSES}")
        if not _is_number(self.cached_fraction) or not 0 <= self.cached_fraction <= 1:
            raise ValueError("cached_fraction must be between 0 and 1")

    def with_changes(self, changes: dict) -> "SimConfig":
        """A new config with some knobs changed; unknown names are refused, not ignored."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        return replace(self, **changes)

    def as_dict(self) -> dict:
        return asdict(self)
