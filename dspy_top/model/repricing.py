"""The viewer's own prices (`--price`, the config file) applied to a process's exact token counters.

Per model and in total the result is exact: cost = `Price.cost(prompt, completion, cached)` of
the model's billed tokens, and those calls are no longer unpriced. Per module it is exact when
every model the module used has a price here (the usual case: one model per module); a module
mixing re-priced and job-priced models keeps the job's figure for the others, with the
re-priced models' original share estimated from their process-wide cost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from dspy_top.model.calls import CallSummary
from dspy_top.model.counters import EMPTY, Counters
from dspy_top.pricing import Price

TokenCell = tuple[int, int, int]  # billed [prompt, completion, cached] tokens of one model in one module


class Repricer:
    """Re-prices one process's counters with the user's prices; a no-op without any."""

    __slots__ = ("prices",)

    def __init__(self, prices: Mapping[str, Price] | None = None) -> None:
        self.prices = dict(prices or {})

    def __bool__(self) -> bool:
        return bool(self.prices)

    def model(self, name: str, counters: Counters) -> Counters:
        price = self.prices.get(name)
        if price is None:
            return counters
        return replace(
            counters,
            unpriced_calls=0,
            cost_usd=price.cost(counters.prompt_tokens, counters.completion_tokens, counters.cached_tokens),
        )

    def totals(self, totals: Counters, models: Mapping[str, Counters]) -> Counters:
        """The process's totals, given its models' counters as the job sent them."""
        overridden = [name for name in models if name in self.prices]
        if not overridden:
            return totals
        old = sum(models[name].cost_usd for name in overridden)
        new = sum(self.model(name, models[name]).cost_usd for name in overridden)
        unpriced = totals.unpriced_calls - sum(models[name].unpriced_calls for name in overridden)
        return replace(totals, cost_usd=max(0.0, totals.cost_usd - old) + new, unpriced_calls=max(0, unpriced))

    def module(self, counters: Counters, cells: Mapping[str, TokenCell], models: Mapping[str, Counters]) -> Counters:
        """One module path's counters, from its per-model token cells."""
        overridden = [name for name in cells if name in self.prices]
        if not overridden:
            return counters
        new = sum(self.prices[name].cost(*cells[name]) for name in overridden)
        if len(overridden) == len(cells):
            return replace(counters, cost_usd=new, unpriced_calls=0)
        old = sum(self._original_share(name, cells[name], models) for name in overridden)
        others_priced = all(models.get(name, EMPTY).unpriced_calls == 0 for name in cells if name not in self.prices)
        # When another model of this module had unpriced calls, which calls they were is unknown: keep the count.
        unpriced = 0 if others_priced else counters.unpriced_calls
        return replace(counters, cost_usd=max(0.0, counters.cost_usd - old) + new, unpriced_calls=unpriced)

    def usage(self, counters: Counters, models: Mapping[str, Counters]) -> Counters:
        """A scope's usage: exact when the process used one model (scopes carry no per-model split)."""
        used = [name for name, c in models.items() if c.tokens]
        if len(used) == 1 and used[0] in self.prices:
            return self.model(used[0], counters)
        return counters

    def call(self, call: CallSummary) -> CallSummary:
        price = self.prices.get(call.model)
        if price is None or call.cache_hit or not (call.prompt_tokens or call.completion_tokens):
            return call
        return call._replace(cost_usd=price.cost(call.prompt_tokens, call.completion_tokens, call.cached_tokens))

    def _original_share(self, name: str, cell: TokenCell, models: Mapping[str, Counters]) -> float:
        # The job's cost for this model in this module, in proportion to its process-wide cost.
        original = models.get(name, EMPTY)
        if original.cost_usd <= 0:
            return 0.0
        price = self.prices[name]
        whole = price.cost(original.prompt_tokens, original.completion_tokens, original.cached_tokens)
        return original.cost_usd * price.cost(*cell) / whole if whole > 0 else 0.0
