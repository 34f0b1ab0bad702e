"""dspy-top: a live, exact `top` for DSPy programs.

`dspy_top.instrument()` in a job serves its LM usage on a Unix socket; the `dspy-top`
command shows it. Importing this package imports neither dspy nor Textual.
"""

from __future__ import annotations

from typing import Any

from dspy_top.errors import BudgetExceeded, BudgetStop
from dspy_top.version import __version__

__all__ = ["instrument", "BudgetExceeded", "BudgetStop", "__version__"]


def instrument(**options: Any):
    """Record every DSPy LM call of this process and serve it to viewers. Idempotent.

    Options:
    - `history`: calls whose full payload is kept for the history pane (default 1000)
    - `history_bytes`: at most this many bytes of those payloads (default 64 MiB)
    - `queue`: events buffered for viewers before they are dropped and counted (default 10000)
    - `serve`: open the Unix socket (default True)
    - `prices`: {model: "IN/OUT[/CACHED]" | (in, out) | Price}, USD per million tokens,
      replacing DSPy's price for those models
    - `budget_usd`, `module_budgets` {path: usd}, `model_budgets` {model: usd}: warn at 80%
      and 100% of each; `on_exceed` = "warn" (default), "raise" (the next LM call raises
      `BudgetExceeded`) or "stop" (the next LM call ends the run with `BudgetStop`)
    - `record`: write everything served to a recording (`dspy-top runs`, `dspy-top export`):
      True for the runs directory (`<user state dir>/dspy-top/runs`), a directory (one file
      per process), or a file; False not to (default: `DSPY_TOP_RECORD`)
    Defaults come from the environment and the config file (see `dspy_top.config`). A bad
    option or setting is reported once on stderr and ignored: this never raises.
    Returns a handle with `socket_path`, `recording_path`, `stats()` and `close()`.
    """
    from dspy_top.instrumentation.runtime import instrument as _instrument

    return _instrument(**options)
