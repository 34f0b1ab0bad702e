"""The job's running tally of exact usage counters: one per (module path, model) cell, scope, module, model and in all.

A plain mutable class with slots (the viewer's frozen form is dspy_top.model.counters.Counters), summed with `add`
and sent with `to_wire` (docs/protocol.md, "Counters"; the names are protocol.COUNTER_FIELDS); the hot
fold (recorder.py) adds one finished call to a cell and to each scope the call ran in.
"""

from __future__ import annotations

from typing import Any

from dspy_top import latency
from dspy_top.protocol import COUNTER_FIELDS


class Tally:
    """Exact usage counters for the whole process, one module path, one model or one scope."""

    __slots__ = (*COUNTER_FIELDS, "latency_hist", "last_at", "by_model")

    def __init__(self) -> None:
        self.calls = self.errors = self.retries = self.cache_hits = 0
        self.prompt_tokens = self.completion_tokens = self.cached_tokens = self.reasoning_tokens = 0
        self.cost_usd = 0.0
        self.unpriced_calls = 0
        self.unmetered_calls = 0  # calls whose token usage DSPy did not report: not in the token counts
        self.cost_saved_usd = 0.0
        self.latency_s = 0.0
        self.in_flight = 0
        self.latency_hist: dict[int, int] = {}
        self.last_at = 0.0
        # Module counters only: billed [prompt, completion, cached] tokens per model, so a
        # viewer can re-price a module's cost with its own price overrides.
        self.by_model: dict[str, list[int]] | None = None

    def add(self, other: Tally) -> None:
        """Sum another set into this one (in_flight and by_model are the caller's business)."""
        self.calls += other.calls
        self.errors += other.errors
        self.retries += other.retries
        self.cache_hits += other.cache_hits
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cached_tokens += other.cached_tokens
        self.reasoning_tokens += other.reasoning_tokens
        self.cost_usd += other.cost_usd
        self.unpriced_calls += other.unpriced_calls
        self.unmetered_calls += other.unmetered_calls
        self.cost_saved_usd += other.cost_saved_usd
        self.latency_s += other.latency_s
        hist = self.latency_hist
        for bucket, count in other.latency_hist.items():
            hist[bucket] = hist.get(bucket, 0) + count
        if other.last_at > self.last_at:
            self.last_at = other.last_at

    def to_wire(self) -> dict[str, Any]:
        wire = {name: getattr(self, name) for name in COUNTER_FIELDS}
        wire["latency_sketch"] = latency.encode(self.latency_hist)
        wire["last_at"] = self.last_at
        if self.by_model is not None:
            wire["by_model"] = {model: list(cell) for model, cell in self.by_model.items()}
        return wire
