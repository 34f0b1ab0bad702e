"""Everything a running simulated LM shares between its request threads."""

import itertools
import threading

from dspy_top.simlm.config import SimConfig
from dspy_top.simlm.faults import FaultInjector
from dspy_top.simlm.stats import SimStats

# Listed by GET /v1/models; any other model name is served too (it just has no price).
ADVERTISED_MODELS = ("gpt-4o-mini", "sim-local")


class SimState:
    """Config (swapped whole under a lock), the stats ledger and the fault injector."""

    def __init__(self, config: SimConfig):
        self._lock = threading.Lock()
        self._config = config
        self.ledger = SimStats()
        self.faults = FaultInjector()
        self._response_numbers = itertools.count(1)

    @property
    def config(self) -> SimConfig:
        return self._config

    def configure(self, changes: dict) -> SimConfig:
        with self._lock:
            self._config = self._config.with_changes(changes)
            return self._config

    def reset(self):
        """Zero the ledger and restart error_every's count."""
        self.ledger.reset()
        self.faults.reset()

    def response_id(self, digest: str) -> str:
        return f"chatcmpl-sim{next(self._response_numbers):06d}{digest[:12]}"

    def models(self) -> list[str]:
        seen = self.ledger.snapshot()["models"]
        return sorted(set(ADVERTISED_MODELS) | set(seen))
