"""How numbers read on screen and in batch text: money, tokens, durations, rates, sparklines.

Unknown cost is never shown as $0: a lower bound gets a `+?`, nothing known is `?`.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dspy_top.model.budget import JobBudget, ViewerBudget
    from dspy_top.model.burn import Burn, EvalProjection
    from dspy_top.model.counters import Counters

SPARK = "▁▂▃▄▅▆▇█"


def count(value: int) -> str:
    """12 · 1,234 · 999,999 · 1.23M: at most 7 characters below a billion (the tables' columns)."""
    if value < 1_000_000:
        return f"{value:,}"
    return tokens(value)


def compact(value: int) -> str:
    """A count in at most 5 characters, for narrow columns (errors, cache hits): 9,999 · 12.3K · 1.23M."""
    return f"{value:,}" if value < 10_000 else tokens(value)


def tokens(value: float) -> str:
    """1,234 · 12.3K · 1.92M · 123M · 4.56G: at most 5 characters (below a trillion)."""
    value = float(value)
    if value < 9_999.5:
        return f"{value:,.0f}"
    # Each step up where rounding would carry into one more digit (99,960 is 100K, not 100.0K).
    for limit, divisor, suffix, digits in (
        (99_950, 1e3, "K", 1),
        (999_500, 1e3, "K", 0),
        (9_995_000, 1e6, "M", 2),
        (99_950_000, 1e6, "M", 1),
        (999_500_000, 1e6, "M", 0),
        (9_995_000_000, 1e9, "G", 2),
        (99_950_000_000, 1e9, "G", 1),
    ):
        if value < limit:
            return f"{value / divisor:.{digits}f}{suffix}"
    return f"{value / 1e9:.0f}G"


def token_count(counters: Counters, value: float) -> str:
    """A token count of a counter set: `1.2K`, `1.2K+?` when DSPy did not report some calls' tokens."""
    return tokens(value) + ("+?" if counters.unmetered_calls else "")


# The widest texts the money formats make, for the columns that show them (columns never touch):
# `<$0.000001` or `$9,999,999` for dollars; `$0.000032+?` or `$999,999+?` for cost (whose `+?` never
# follows `<$0.000001`).
DOLLARS_WIDTH = 10
COST_WIDTH = 11


def dollars(value: float) -> str:
    """$2.87 · $0.0043 · $0.000032 · $1,234 · $0: a table cell's amount, as narrow as it can be; small amounts
    keep two significant digits. A sentence (a budget alert) takes dspy_top.pricing.usd, which keeps the cents."""
    if value == 0:
        return "$0"
    if value < 0.000001:
        return "<$0.000001"
    if value < 0.01:
        exponent = math.floor(math.log10(value))
        decimals = min(6, 1 - exponent)
        if round(value, decimals) >= 10.0 ** (exponent + 1):  # rounding carried a digit: $0.0010, not $0.00100
            decimals -= 1
        if round(value, decimals) < 0.01:
            return f"${value:.{decimals}f}"
    if round(value, 2) < 100:
        return f"${value:.2f}"
    return f"${value:,.0f}"


def cost(counters: Counters) -> str:
    """A counter set's cost: `$1.23`, `$1.23+?` when some calls had no price, `?` when none did (or the
    priced ones came to less than a millionth of a dollar: the total is as good as unknown)."""
    if counters.unpriced_calls and counters.cost_usd < 0.000001:
        return "?"
    text = dollars(counters.cost_usd)
    return text + "+?" if counters.unpriced_calls else text


def call_cost(value: float | None, cache_hit: bool = False) -> str:
    if value is None:
        return "?"
    return dollars(value)


def burn(value: Burn) -> str:
    """`$0.27/min last 1m ($0.20/min avg) · ~$16/h · 1,245 tok/s last 1m (940 avg)`."""
    window = f"{value.window / 60:g}m" if value.window >= 60 else f"{value.window:g}s"
    return (
        f"{dollars(value.cost_per_min)}/min last {window} ({dollars(value.cost_per_min_avg)}/min avg) · "
        f"~{dollars(value.cost_per_hour)}/h · {rate(value.tokens_per_sec)} tok/s last {window} "
        f"({rate(value.tokens_per_sec_avg)} avg)"
    )


def projection(value: EvalProjection) -> str:
    """`eval 37/100 ends at ~$1.10 (~$0.70 to go)`; `?` when nothing it spent has a price."""
    text = f"eval {value.done}/{value.total} "
    if value.projected_usd is None:
        return text + ("ends at ?" if value.done else "ends at ? (no example done yet)")
    lower = "" if value.cost_known else "+?"
    return (
        text + f"ends at ~{dollars(value.projected_usd)}{lower} (~{dollars(value.remaining_usd or 0.0)}{lower} to go)"
    )


def viewer_budget(value: ViewerBudget) -> str:
    """`$4.12 of $5.00 (82%)`."""
    lower = "" if value.cost_known else "+?"
    return f"{dollars(value.spent)}{lower} of {dollars(value.usd)} ({100 * value.fraction:.0f}%)"


def job_budget(value: JobBudget) -> str:
    """`pid 41822 on_exceed=stop: total $1.20 of $5.00 (24%), module RAG.answer ... · 1 alert`."""
    limits = ", ".join(
        f"{limit.label} {dollars(limit.spent)} of {dollars(limit.usd)} ({100 * limit.fraction:.0f}%)"
        for limit in value.limits
    )
    text = f"pid {value.pid} on_exceed={value.on_exceed}: {limits or 'no limits'}"
    stops = [a for a in value.alerts if a.level in ("100", "stop")]
    if stops:
        text += f" · {stops[-1].message.removeprefix('dspy-top: ')}"
    elif value.alerts:
        text += f" · {len(value.alerts)} alert{'s' if len(value.alerts) != 1 else ''}"
    return text


def seconds(value: float | None) -> str:
    """A latency: 12ms · 1.1s · 2m03s; `-` when there is none."""
    if value is None:
        return "-"
    # Each unit up to where its rounding would carry into the next (0.9996 s is 1.0s, never 1000ms).
    if value < 0.9995:
        return f"{value * 1000:.0f}ms"
    if value < 59.95:
        return f"{value:.1f}s"
    minutes, secs = divmod(int(round(value)), 60)
    return f"{minutes}m{secs:02d}s"


def uptime(value: float) -> str:
    """00:14:07, or 2d 03:04:05."""
    value = max(0, int(value))
    days, rest = divmod(value, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}d {text}" if days else text


def short_span(seconds: float) -> str:
    """A chart's span: `40s`, `2m`, `1m30s`."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, secs = divmod(seconds, 60)
    return f"{minutes}m{secs:02d}s" if secs else f"{minutes}m"


def short_uptime(value: float) -> str:
    value = max(0, int(value))
    hours, rest = divmod(value, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def rate(value: float) -> str:
    """Tokens per second in at most 5 characters: 0 · 4.2 · 950 · 9,999 · 12.3K."""
    if value >= 9_999.5:  # 9,999.7 would round to 10,000: six characters
        return tokens(value)
    return f"{value:,.0f}" if value >= 10 or value == 0 else f"{value:.1f}"


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def clock(epoch: float, millis: bool = True) -> str:
    text = time.strftime("%H:%M:%S", time.localtime(epoch))
    return f"{text}.{int((epoch % 1) * 1000):03d}" if millis else text


def score(value: float | None) -> str:
    """A metric score as `Evaluate` reports it, in percent: `73.7%`; `-` when there is none."""
    return "-" if value is None else f"{value:.1f}%"


def middle(text: str, width: int) -> str:
    """`text` in `width` cells, cut in the middle with `…` when it must (both ends say the most)."""
    if width <= 0:
        return ""
    if len(text) <= width:
        return text
    if width == 1:
        return "…"
    head = (width - 1 + 1) // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def command(argv: list[str] | tuple[str, ...]) -> str:
    """A process's `sys.argv` with its script's directory left out: `tour.py --questions 40`.

    The script names a job; where it lives (`/home/me/src/project/...`) would fill the column."""
    words = list(argv)
    if not words:
        return ""
    return " ".join([words[0].rsplit("/", 1)[-1] or words[0], *words[1:]])


def whole_parts(text: str, width: int, separator: str = " · ") -> str:
    """`text` in `width` cells, its last `separator`-joined parts left out whole rather than cut (a cut
    `~$0.02 to finish` would read `~`); the first part is cut with `…` if even it does not fit."""
    if len(text) <= width:
        return text
    parts = text.split(separator)
    while len(parts) > 1 and len(separator.join(parts)) > width:
        parts.pop()
    kept = separator.join(parts)
    return kept if len(kept) <= width else kept[: max(0, width - 1)] + "…"


def fit_title(title: str, width: int) -> str:
    """A pane's title in `width` cells: `Name (a · b · c)` keeps its name and its first parts whole, and
    closes its parenthesis; any other title keeps its first ` · ` parts whole."""
    if len(title) <= width or width <= 0:
        return title
    head, paren, inner = title.partition(" (")
    if paren and inner.endswith(")") and len(head) + 4 < width:
        return f"{head} ({whole_parts(inner[:-1], width - len(head) - 3)})"
    return whole_parts(title, width)


def middle_command(line: str, width: int) -> str:
    """A command line in `width` cells: its script whole when it fits, its arguments cut in the middle."""
    script, _, rest = line.partition(" ")
    if len(line) <= width or not rest or len(script) + 3 > width:
        return middle(line, width)
    return f"{script} {middle(rest, width - len(script) - 1)}"


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
