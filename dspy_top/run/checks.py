"""What `dspy-top run` checks before it starts the job: the configuration the job will read.

A job instrumented with a bad value (a budget of "five", `on_exceed = "explode"`, a price that
is not IN/OUT) would run uninstrumented, and the viewer could only say that no process served
dspy-top. So the file, DSPY_TOP_PRICES, DSPY_TOP_BUDGET and DSPY_TOP_ON_EXCEED are read here,
from the job's environment, exactly as the job reads them, and a problem is said up front.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

from dspy_top import config
from dspy_top.pricing import normalize, parse_price

ON_EXCEED = ("warn", "raise", "stop")


def config_problem(env: Mapping[str, str]) -> str | None:
    """What is wrong with the configuration a job started with `env` would read, or None."""
    path = Path(env["DSPY_TOP_CONFIG"]) if env.get("DSPY_TOP_CONFIG") else config.config_file()
    try:
        file = config.load_file(path)
    except ValueError as exc:
        return f"the config file cannot be read: {exc}"
    where = str(path)
    prices = file.get("prices")
    if prices is not None and not isinstance(prices, Mapping):
        return f"{where}: [prices] must be a table of MODEL = \"IN/OUT\""
    try:
        normalize(prices)
    except (ValueError, TypeError, KeyError) as exc:
        return f"{where}: [prices]: {_say(exc)}"
    for item in filter(None, env.get("DSPY_TOP_PRICES", "").split(",")):
        try:
            parse_price(item.strip())
        except ValueError as exc:
            return f"DSPY_TOP_PRICES: {exc}"
    budget = file.get("budget") or {}
    if not isinstance(budget, Mapping):
        return f"{where}: [budget] must be a table"
    problem = (_usd(budget.get("usd"), f"{where}: [budget] usd")
               or _choice(budget.get("on_exceed", "warn"), f"{where}: [budget] on_exceed"))
    for name in ("modules", "models"):
        limits = budget.get(name) or {}
        if not isinstance(limits, Mapping):
            return f"{where}: [budget.{name}] must be a table of USD limits"
        for key, value in limits.items():
            problem = problem or _usd(value, f"{where}: [budget.{name}] {key!r}")
    if env.get("DSPY_TOP_BUDGET"):
        problem = problem or _usd(env["DSPY_TOP_BUDGET"], "DSPY_TOP_BUDGET", text=True)
    if env.get("DSPY_TOP_ON_EXCEED"):
        problem = problem or _choice(env["DSPY_TOP_ON_EXCEED"], "DSPY_TOP_ON_EXCEED")
    return problem


def _usd(value: Any, what: str, text: bool = False) -> str | None:
    if value is None:
        return None
    try:
        number = float(value) if text or not isinstance(value, (str, bool)) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0:
        return f"{what} is {value!r}, not an amount of USD (a number, 0 or more)"
    return None


def _choice(value: Any, what: str) -> str | None:
    if value in ON_EXCEED:
        return None
    return f"{what} is {value!r}, not one of {', '.join(ON_EXCEED)}"


def _say(exc: BaseException) -> str:
    return f"missing {exc}" if isinstance(exc, KeyError) else str(exc)
