"""The models table: calls, tokens, generation speed, cost and cache hits per LM model string."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from dspy_top.viewer import format as fmt
from dspy_top.viewer.components.keyed_table import Column, KeyedTable
from dspy_top.viewer.terminal import inert

if TYPE_CHECKING:
    from dspy_top.model import Snapshot

FIXED = (
    Column("calls", "CALLS", 7),
    Column("prompt", "IN TOK", 6),
    Column("completion", "OUT TOK", 7),
    Column("rate", "TOK/S", 5),
    Column("output_rate", "OUT/S", 5),
    Column("cost", "COST", fmt.COST_WIDTH),
    Column("errors", "ERR", 5),
    Column("hits", "HITS", 5),
)
NARROW = (
    Column("calls", "CALLS", 7),
    Column("output_rate", "OUT/S", 5),
    Column("cost", "COST", fmt.COST_WIDTH),
    Column("hits", "HITS", 5),
)


class ModelTable(KeyedTable):
    """One row per model, most expensive first; unknown cost reads `?`, never $0. OUT/S is the
    model's generation speed (completion tokens per second); TOK/S counts prompt tokens too."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.set_title("Models")

    def layout_for(self, width: int, narrow: bool = False) -> None:
        fixed = NARROW if narrow else FIXED
        self.set_columns((Column("model", "MODEL", self.first_width(width, fixed), right=False), *fixed))

    def show(self, snapshot: Snapshot) -> None:
        rows = []
        width = self.table_columns[0].width if self.table_columns else 30
        for row in snapshot.models:
            c = row.counters
            mark = " *" if row.price_override else ""  # priced with the user's rates
            name = Text(fmt.middle(inert(row.model), width - len(mark)), no_wrap=True, overflow="ellipsis")
            name.append(mark, style="bold cyan")
            cells = {
                "model": name,
                "calls": fmt.count(c.calls),
                "prompt": fmt.token_count(c, c.prompt_tokens),
                "completion": fmt.token_count(c, c.completion_tokens),
                "rate": fmt.rate(row.tokens_per_sec),
                "output_rate": fmt.rate(row.output_tokens_per_sec),
                "cost": Text(fmt.cost(c), style="yellow" if c.unpriced_calls else ""),
                "errors": Text(fmt.compact(c.errors), style="bold red" if c.errors else "dim"),
                "hits": fmt.compact(c.cache_hits),
            }
            rows.append((row.model, [cells[column.key] for column in self.table_columns]))
        self.sync(rows)
        overrides = any(row.price_override for row in snapshot.models)
        self.set_title(
            f"Models ({len(rows)} · OUT/S: output tokens per second)" + (" · * your price" if overrides else "")
        )
