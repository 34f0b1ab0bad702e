"""dspy-top: a live, exact `top` for DSPy programs.

`dspy_top.instrument()` in a job serves its LM usage on a Unix socket; the `dspy-top`
command shows it. Importing this package imports neither dspy nor Textual.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["instrument", "__version__"]


def instrument(**options: Any):
    """Record every DSPy LM call of this process and serve it to viewers. Idempotent.

    Options: `history` (calls whose full payload is kept, default 1000), `queue`
    (events buffered for viewers, default 10000), `serve` (open the socket, default True).
    Returns a handle with `socket_path`, `stats()` and `close()`.
    """
    from dspy_top.instrumentation.runtime import instrument as _instrument

    return _instrument(**options)
