"""The `/` filter input: free words match module, model and error text; `module:`, `model:`, `pid:`, `scope:` narrow."""

from __future__ import annotations

from textual.binding import Binding
from textual.widgets import Input


class FilterBar(Input):
    """Hidden until `/`; enter applies and returns to the tables, escape clears."""

    BINDINGS = [Binding("escape", "clear_filter", "Clear filter")]

    def __init__(self, **kwargs) -> None:
        super().__init__(
            placeholder="filter: words, module:NAME, model:NAME, pid:N, scope:eval-N, err, cache", **kwargs
        )

    def action_clear_filter(self) -> None:
        self.value = ""
        self.post_message(self.Submitted(self, "", None))
