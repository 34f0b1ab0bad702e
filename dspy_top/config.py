"""Settings from the config file and the environment, shared by the job and the viewer.

`<platformdirs user_config_dir>/dspy-top/config.toml` (or `$DSPY_TOP_CONFIG`):

    [prices]                      # USD per million tokens: input/output[/cached]
    "openai/gpt-4o-mini" = "0.15/0.60"
    [budget]
    usd = 5.0                     # total; warn at 80% and 100%
    on_exceed = "warn"            # or "raise", "stop"
    [budget.modules]
    "RAG.answer" = 1.0
    [budget.models]
    "openai/gpt-4o" = 2.0

Environment: DSPY_TOP_BUDGET (USD), DSPY_TOP_ON_EXCEED, DSPY_TOP_PRICES
("MODEL=IN/OUT,MODEL=IN/OUT"). Explicit arguments beat the environment, which beats the file.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from dspy_top import paths
from dspy_top.pricing import Price, normalize, parse_price


def config_file() -> Path:
    override = os.environ.get("DSPY_TOP_CONFIG")
    return Path(override) if override else paths.config_dir() / "config.toml"


def load_file(path: Path | None = None) -> dict[str, Any]:
    """The parsed config file, or {} when there is none. A broken file raises ValueError with its path."""
    path = path or config_file()
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def prices(explicit: dict[str, Any] | None = None, file: dict[str, Any] | None = None) -> dict[str, Price]:
    merged = normalize((file or {}).get("prices"))
    for item in filter(None, os.environ.get("DSPY_TOP_PRICES", "").split(",")):
        model, price = parse_price(item.strip())
        merged[model] = price
    merged.update(normalize(explicit))
    return merged


def budget(file: dict[str, Any] | None = None) -> dict[str, Any]:
    """{usd, on_exceed, modules, models} from the file and the environment."""
    section = dict((file or {}).get("budget") or {})
    out = {"usd": section.get("usd"), "on_exceed": section.get("on_exceed", "warn"),
           "modules": dict(section.get("modules") or {}), "models": dict(section.get("models") or {})}
    if os.environ.get("DSPY_TOP_BUDGET"):
        out["usd"] = float(os.environ["DSPY_TOP_BUDGET"])
    if os.environ.get("DSPY_TOP_ON_EXCEED"):
        out["on_exceed"] = os.environ["DSPY_TOP_ON_EXCEED"]
    return out
