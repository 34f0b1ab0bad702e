"""User price overrides: parse `MODEL=IN/OUT[/CACHED]` (USD per million tokens) and price usage.

Shared by the job (`instrument(prices=...)`) and the viewer (`--price`); standard library only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PER_MILLION = 1_000_000


def usd(value: float) -> str:
    """$5.00 · $1,234.50 · $0.0040: an amount in a sentence (budget alerts, in the job and the viewer), always
    with its cents; small budgets and spends keep their significant digits. A table cell takes
    dspy_top.viewer.format.dollars instead, which is narrower ($1,234, $0)."""
    if value >= 0.01 or value <= 0:
        return f"${value:,.2f}"
    return f"${value:.{min(8, 1 - math.floor(math.log10(value)))}f}"


@dataclass(frozen=True)
class Price:
    """USD per million tokens. `cached` prices provider-cached prompt tokens (default: as input)."""

    input: float
    output: float
    cached: float | None = None

    def cost(self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0) -> float:
        cached_rate = self.input if self.cached is None else self.cached
        fresh = max(0, prompt_tokens - cached_tokens)
        return (fresh * self.input + cached_tokens * cached_rate + completion_tokens * self.output) / PER_MILLION


def parse_price(text: str) -> tuple[str, Price]:
    """`openai/gpt-4o-mini=0.15/0.60` or `...=0.15/0.60/0.075` → (model, Price)."""
    model, sep, rates = text.partition("=")
    if not sep or not model.strip():
        raise ValueError(f"price {text!r}: expected MODEL=IN/OUT (USD per million tokens)")
    parts = rates.split("/")
    if len(parts) not in (2, 3):
        raise ValueError(f"price {text!r}: expected IN/OUT or IN/OUT/CACHED")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"price {text!r}: rates must be numbers") from None
    return model.strip(), _checked(values, text)


def _checked(values: list[float], shown: Any) -> Price:
    if any(not math.isfinite(v) for v in values):
        raise ValueError(f"price {shown!r}: rates must be finite numbers")
    if any(v < 0 for v in values):
        raise ValueError(f"price {shown!r}: rates cannot be negative")
    return Price(*values)


def normalize_one(model: Any, value: Any) -> Price:
    """One price given as a Price, (in, out[, cached]), "in/out[/cached]" or {"input":, "output":, "cached":}."""
    if isinstance(value, Price):
        return value
    if isinstance(value, str):
        return parse_price(f"{model}={value}")[1]
    if isinstance(value, Mapping):
        rates = [value["input"], value["output"]] + ([value["cached"]] if value.get("cached") is not None else [])
    elif isinstance(value, (list, tuple)) and len(value) in (2, 3):
        rates = list(value)
    else:
        raise ValueError(f'price {value!r}: expected "IN/OUT", (IN, OUT) or {{input, output}}')
    if any(isinstance(rate, bool) for rate in rates):
        raise ValueError(f"price {value!r}: rates must be numbers")
    return _checked([float(rate) for rate in rates], value)
