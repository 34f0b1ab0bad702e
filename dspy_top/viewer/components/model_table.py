"""The models table: calls, tokens, cost and cache hits per LM model string."""

from __future__ import annotations

from rich.text import Text

from dspy_top.model import Snapshot
from dspy_top.viewer import format as fmt
from dspy_top.viewer.terminal import inert
from dspy_top.viewer.components.keyed_table import Column, KeyedTable

FIXED = (
    Column("calls", "CALLS", 8),
    Column("tokens", "TOKENS", 8),
    Column("cost", "COST", 10),
    Column("hits", "HITS", 6),
)


class ModelTable(KeyedTable):
    """One row per model, most expensive first; unknown cost reads `?`, never $0."""

    def __init__(self, **kwargs) -> None:
        super().__init__(cell_padding=0, **kwargs)
        self.set_title("Models")

    def layout_for(self, width: int) -> None:
        name = max(12, width - sum(c.width for c in FIXED) - 2)
        self.set_columns((Column("model", "MODEL", name, right=False), *FIXED))

    def show(self, snapshot: Snapshot) -> None:
        rows = []
        for row in snapshot.models:
            c = row.counters
            name = Text(inert(row.model), no_wrap=True, overflow="ellipsis")
            if row.price_override:
                name.append(" *", style="bold cyan")  # priced with the user's rates
            rows.append((row.model, [
                name, fmt.count(c.calls), fmt.token_count(c, c.tokens),
                Text(fmt.cost(c), style="yellow" if c.unpriced_calls else ""),
                str(c.cache_hits),
            ]))
        self.sync(rows)
        overrides = any(row.price_override for row in snapshot.models)
        self.set_title(f"Models ({len(rows)})" + (" · * your price" if overrides else ""))
