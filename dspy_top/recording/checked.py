"""Times and amounts read back from a recording, checked where they are read.

A recording holds what its process sent, bad values included (an `exit` at infinity, a NaN
cost, a string where a start time goes): the viewer's fold checks each message (dspy_top/schema),
and what the recording commands read on their own (its start and end, a checkpoint's time, a
row's start, the totals `runs` sums) goes through these, so one bad value costs itself only.
"""

from __future__ import annotations

import math
from typing import Any

from dspy_top.schema.values import MAX_EPOCH


def moment(value: Any, default: float | None = None) -> float | None:
    """`value` as epoch seconds when it is one (a finite number from 0 to MAX_EPOCH), else `default`."""
    if type(value) in (int, float) and 0 <= value <= MAX_EPOCH:  # NaN fails the comparison
        return float(value)
    return default


def amount(value: Any) -> float:
    """`value` when it is a finite number (not a bool), else 0."""
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return value
    return 0


def finite(value: Any) -> bool:
    """Is `value` a finite number (not a bool)?"""
    return type(value) is int or (type(value) is float and math.isfinite(value))
