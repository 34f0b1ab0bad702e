"""The answer to a payload request (a call's full prompt and response), as the collector delivers it.

A plain value in the model so that the collector's thread and the inspect screen share it
without one importing the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PayloadAnswer:
    """The answer to one payload request: the payload, or why there is none."""

    process: str
    call_id: int
    payload: dict[str, Any] | None
    reason: str | None = None
