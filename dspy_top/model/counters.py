"""Exact usage counters as the process sends them, summed across modules, models and processes.

A frozen value: folding a `stats` frame replaces counters whole, so a snapshot can share them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

from dspy_top import latency
from dspy_top.protocol import COUNT_FIELDS, SECONDS_FIELDS, USD_FIELDS
from dspy_top.schema.records import EMPTY_COUNTERS, CountersRecord

_FIELDS = tuple(f.name for f in fields(CountersRecord))


@dataclass(frozen=True, slots=True)
class Counters(CountersRecord):
    """One set of exact counters (see docs/protocol.md, "Counters"): the checked wire record's
    fields (dspy_top/schema/), with the arithmetic the views need."""

    @classmethod
    def from_record(cls, record: CountersRecord) -> Counters:
        """Counters from their checked wire record."""
        if record is EMPTY_COUNTERS:
            return EMPTY
        return cls(*(getattr(record, name) for name in _FIELDS))

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def cost_known(self) -> bool:
        """False when some billed calls had no price: `cost_usd` is then a lower bound."""
        return self.unpriced_calls == 0

    @property
    def tokens_known(self) -> bool:
        """False when DSPy did not report some calls' tokens: the token counts are then a lower bound."""
        return self.unmetered_calls == 0

    @property
    def cache_hit_rate(self) -> float | None:
        return self.cache_hits / self.calls if self.calls else None

    def percentile(self, q: float) -> float | None:
        return latency.percentile(dict(self.latency_hist), q)

    @property
    def p50(self) -> float | None:
        return self.percentile(0.50)

    @property
    def p95(self) -> float | None:
        return self.percentile(0.95)

    def to_json(self) -> dict[str, Any]:
        """The counters as plain JSON (no histogram; percentiles instead)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in COUNT_FIELDS}
        out.update({name: getattr(self, name) for name in USD_FIELDS + SECONDS_FIELDS})
        out["cost_usd"] = round(self.cost_usd, 10)
        out["cost_saved_usd"] = round(self.cost_saved_usd, 10)
        out["cost_known"] = self.cost_known
        out["tokens_known"] = self.tokens_known
        out["p50_s"] = self.p50
        out["p95_s"] = self.p95
        return out


EMPTY = Counters()


def total(parts: Iterable[Counters]) -> Counters:
    """The sum of several counters (histograms merged, `last_at` the latest)."""
    parts = [p for p in parts if p is not EMPTY]
    if not parts:
        return EMPTY
    if len(parts) == 1:
        return parts[0]
    values: dict[str, Any] = {name: sum(getattr(p, name) for p in parts) for name in COUNT_FIELDS}
    values.update({name: sum(getattr(p, name) for p in parts) for name in USD_FIELDS + SECONDS_FIELDS})
    hist: dict[int, int] = {}
    for part in parts:
        latency.merge(hist, part.latency_hist)
    values["latency_hist"] = hist
    values["last_at"] = max(p.last_at for p in parts)
    return Counters(**values)
