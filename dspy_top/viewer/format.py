"""How numbers read on screen and in batch text: money, tokens, durations, rates, sparklines.

Unknown cost is never shown as $0: a lower bound gets a `+?`, nothing known is `?`.
"""

from __future__ import annotations

import math
import time

from dspy_top.model.counters import Counters

SPARK = "▁▂▃▄▅▆▇█"


def count(value: int) -> str:
    return f"{value:,}"


def tokens(value: float) -> str:
    """1,234 · 12.3K · 1.92M."""
    value = float(value)
    if value < 10_000:
        return f"{value:,.0f}"
    if value < 1_000_000:
        return f"{value / 1000:.1f}K" if value < 100_000 else f"{value / 1000:.0f}K"
    return f"{value / 1_000_000:.2f}M"


def dollars(value: float) -> str:
    """$2.87 · $0.0043 · $0.000032: small amounts keep two significant digits."""
    if value == 0:
        return "$0"
    if value < 0.000001:
        return "<$0.000001"
    if value < 0.01:
        decimals = min(6, -math.floor(math.log10(value)) + 1)
        return f"${value:.{decimals}f}"
    if value < 100:
        return f"${value:.2f}"
    return f"${value:,.0f}"


def cost(counters: Counters) -> str:
    """A counter set's cost: `$1.23`, `$1.23+?` when some calls had no price, `?` when none did."""
    if counters.unpriced_calls and counters.cost_usd == 0:
        return "?"
    text = dollars(counters.cost_usd)
    return text + "+?" if counters.unpriced_calls else text


def call_cost(value: float | None, cache_hit: bool = False) -> str:
    if value is None:
        return "?"
    return dollars(value)


def seconds(value: float | None) -> str:
    """A latency: 12ms · 1.1s · 2m03s; `-` when there is none."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(value), 60)
    return f"{minutes}m{secs:02d}s"


def uptime(value: float) -> str:
    """00:14:07, or 2d 03:04:05."""
    value = max(0, int(value))
    days, rest = divmod(value, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {text}" if days else text


def short_uptime(value: float) -> str:
    value = max(0, int(value))
    hours, rest = divmod(value, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def rate(value: float) -> str:
    if value >= 10_000:
        return tokens(value)
    return f"{value:,.0f}" if value >= 10 or value == 0 else f"{value:.1f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def clock(epoch: float, millis: bool = True) -> str:
    text = time.strftime("%H:%M:%S", time.localtime(epoch))
    return f"{text}.{int((epoch % 1) * 1000):03d}" if millis else text


def sparkline(values: list[float] | tuple[float, ...], width: int) -> str:
    """The last `width` values as block characters, scaled to their maximum."""
    if width <= 0:
        return ""
    values = list(values)[-width:]
    values = [0.0] * (width - len(values)) + values
    top = max(values) if values else 0.0
    if top <= 0:
        return SPARK[0] * width
    last = len(SPARK) - 1
    return "".join(SPARK[min(last, int(round(v / top * last)))] for v in values)
