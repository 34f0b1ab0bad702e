"""Settings from the config file and the environment, checked in one place for the job and the viewer.

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
    [recording]
    cap = "1GiB"                  # per recording: past it payloads stop, counts go on
    keep = "5GiB"                 # the runs directory keeps the newest recordings up to this

Environment: DSPY_TOP_BUDGET (USD), DSPY_TOP_ON_EXCEED, DSPY_TOP_PRICES
("MODEL=IN/OUT,MODEL=IN/OUT"), DSPY_TOP_HISTORY, DSPY_TOP_HISTORY_BYTES, DSPY_TOP_QUEUE,
DSPY_TOP_VIEWER_BUFFER, DSPY_TOP_MAX_VIEWERS, DSPY_TOP_EXIT_WAIT, DSPY_TOP_RECORD (a file, a
directory, 1 for the runs directory, 0 for none), DSPY_TOP_RECORD_CAP, DSPY_TOP_RECORD_KEEP.
Explicit arguments beat the environment, which beats the file.

`job_settings()` reads every setting of an instrumented job and returns the problems it
found beside them: the job warns about each and goes on without that setting (a setting
never raises into a job), while `dspy-top run` and `dspy-top demo` refuse to start a job
with any (exit status 2). `viewer_prices()` does the same for the viewer's prices.
"""

from __future__ import annotations

import functools
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from dspy_top import paths
from dspy_top.budget_levels import ON_EXCEED
from dspy_top.pricing import Price, normalize_one, parse_price

RECORD_CAP = 1024**3  # bytes per recording (recording.writer.DEFAULT_CAP)
RECORD_KEEP = 5 * 1024**3  # bytes of recordings the runs directory keeps (recording.runs.DEFAULT_KEEP_BYTES)
_YES = ("1", "true", "yes", "on")
_NO = ("0", "false", "no", "off")


@dataclass(frozen=True)
class JobSettings:
    """What an instrumented job runs with; every field already checked."""

    history: int = 1000  # calls kept in full for the history pane
    history_bytes: int = 64 * 1024 * 1024  # ... within this many bytes of their payloads
    queue: int = 10_000  # events buffered for viewers
    viewer_buffer: int = 4 * 1024 * 1024  # bytes a viewer may lag behind before it loses call events
    max_viewers: int = 64  # viewers attached at once; more are refused with a message
    exit_wait: float = 0.0  # seconds a job ending before any viewer attached waits for one
    prices: dict[str, Price] = field(default_factory=dict)
    budget_usd: float | None = None
    on_exceed: str = "warn"
    module_budgets: dict[str, float] = field(default_factory=dict)
    model_budgets: dict[str, float] = field(default_factory=dict)
    # Where the job records what it serves: False (not at all), True (the runs directory, one
    # file per process), or a path (an existing directory, or one ending in `/`: one file per
    # process in it; else that file), as given (a Path would lose the trailing `/`).
    record: bool | str = False
    record_cap: int = RECORD_CAP
    record_keep: int = RECORD_KEEP


# Numeric settings: (environment variable, field, parse, lowest, highest).
_LIMITS = (
    ("DSPY_TOP_HISTORY", "history", "count", 1, 1_000_000),
    ("DSPY_TOP_HISTORY_BYTES", "history_bytes", "size", 4096, 1 << 40),
    ("DSPY_TOP_QUEUE", "queue", "count", 1, 10_000_000),
    ("DSPY_TOP_VIEWER_BUFFER", "viewer_buffer", "size", 64 * 1024, 1 << 30),
    ("DSPY_TOP_MAX_VIEWERS", "max_viewers", "count", 1, 4096),
    ("DSPY_TOP_EXIT_WAIT", "exit_wait", "seconds", 0, 60),
    ("DSPY_TOP_RECORD_CAP", "record_cap", "size", 4096, 1 << 50),
    ("DSPY_TOP_RECORD_KEEP", "record_keep", "size", 0, 1 << 60),
)
# The same sizes in the config file's [recording] table: (key, field).
_RECORDING_FILE = (("cap", "record_cap"), ("keep", "record_keep"))
_SIZE = re.compile(r"(?i)^\s*(\d+(?:\.\d+)?)\s*(k|m|g)?(i?b)?\s*$")
_UNITS = {None: 1, "k": 1024, "m": 1024**2, "g": 1024**3}


class Problems(list):
    """What was wrong with the settings, one sentence each."""

    def note(self, where: str, value: Any, why: str) -> None:
        self.append(f"{where}={value!r}: {why}")


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
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from None


def _read_file(problems: Problems, environ: Mapping[str, str]) -> dict[str, Any]:
    override = environ.get("DSPY_TOP_CONFIG")
    try:
        return load_file(Path(override) if override else None)
    except ValueError as exc:
        problems.append(f"the config file is ignored: {exc}")
        return {}


def job_settings(
    explicit: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    file: Mapping[str, Any] | None = None,
) -> tuple[JobSettings, list[str]]:
    """An instrumented job's settings and what was wrong with them (each bad one left at its default).

    `explicit`: `instrument()`'s arguments (None means not given); `file`: the parsed config
    file (read from `DSPY_TOP_CONFIG` or the default path when not given).
    """
    environ = os.environ if environ is None else environ
    explicit = {k: v for k, v in (explicit or {}).items() if v is not None}
    problems = Problems()
    if file is None:
        file = _read_file(problems, environ)
    settings = JobSettings()
    changes: dict[str, Any] = {}
    recording = _table(file, "recording", problems)
    for variable, name, kind, low, high in _LIMITS:
        in_file = next((key for key, field_name in _RECORDING_FILE if field_name == name), None)
        if name in explicit:
            where, text = name, explicit[name]
        elif environ.get(variable, "").strip():
            where, text = variable, environ[variable]
        elif in_file is not None and recording.get(in_file) is not None:
            where, text = f"config file [recording] {in_file}", recording[in_file]
        else:
            continue
        value = _number(text, kind, low, high, where, problems)
        if value is not None:
            changes[name] = value
    record = _record(explicit.get("record"), environ.get("DSPY_TOP_RECORD", ""), problems)
    if record is not None:
        changes["record"] = record
    changes["prices"] = _prices(explicit.get("prices"), environ, file, problems)
    budget = _table(file, "budget", problems)
    for name, key, variable in (
        ("budget_usd", "usd", "DSPY_TOP_BUDGET"),
        ("on_exceed", "on_exceed", "DSPY_TOP_ON_EXCEED"),
    ):
        check = _usd if name == "budget_usd" else _action
        candidates = [
            (name, explicit.get(name)),
            (variable, environ.get(variable) or None),
            (f"config file [budget] {key}", budget.get(key)),
        ]
        for where, value in candidates:
            if value is None:
                continue
            checked = check(value, where, problems)
            if checked is not None:
                changes[name] = checked
                break
    for name, key in (("module_budgets", "modules"), ("model_budgets", "models")):
        given = explicit.get(name)
        where = name if given is not None else f"config file [budget.{key}]"
        changes[name] = _budgets(given if given is not None else budget.get(key), where, problems)
    return replace(settings, **changes), list(problems)


def viewer_prices(
    explicit: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    file: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Price], list[str]]:
    """The viewer's prices (options, then the environment, then the file) and what was wrong with them."""
    environ = os.environ if environ is None else environ
    problems = Problems()
    if file is None:
        file = _read_file(problems, environ)
    return _prices(explicit, environ, file, problems), list(problems)


# --- one setting each --------------------------------------------------------------------


def _table(file: Any, name: str, problems: Problems) -> Mapping[str, Any]:
    """The config file's [name] table ({} when there is none, or when it is not a table: said)."""
    table = file.get(name) if isinstance(file, Mapping) else None
    if table is not None and not isinstance(table, Mapping):
        problems.note(f"config file [{name}]", table, "not a table")
        return {}
    return table or {}


def _record(explicit: Any, text: str, problems: Problems) -> bool | str | None:
    """`record=` (True, False, a path) or DSPY_TOP_RECORD (1, 0, a path); None when neither says."""
    if explicit is not None:
        if isinstance(explicit, bool):
            return explicit
        if isinstance(explicit, (str, os.PathLike)) and str(os.fspath(explicit)).strip():
            return os.path.expanduser(str(os.fspath(explicit)))
        problems.note("record", explicit, "expected a path, True or False")
        return None
    text = text.strip()
    if not text:
        return None
    if text.lower() in _YES:
        return True
    if text.lower() in _NO:
        return False
    return os.path.expanduser(text)


def _number(text: Any, kind: str, low: float, high: float, where: str, problems: Problems) -> float | int | None:
    try:
        if kind == "size" and isinstance(text, str):
            match = _SIZE.match(text)
            if match is None:
                raise ValueError
            value: float = float(match.group(1)) * _UNITS[(match.group(2) or "").lower() or None]
        elif isinstance(text, bool):
            raise ValueError
        else:
            value = float(text) if kind == "seconds" else float(str(text).strip())
    except (TypeError, ValueError, OverflowError):
        unit = {"count": "a whole number", "size": "a size in bytes (e.g. 4194304 or 4MiB)", "seconds": "seconds"}[kind]
        problems.note(where, text, f"expected {unit}")
        return None
    if not math.isfinite(value):
        problems.note(where, text, "not a finite number")
        return None
    if kind == "count" and value != int(value):
        problems.note(where, text, "expected a whole number")
        return None
    if not low <= value <= high:
        problems.note(where, text, f"must be between {low:,} and {high:,}")
        return None
    return float(value) if kind == "seconds" else int(value)


def _usd(value: Any, where: str, problems: Problems) -> float | None:
    try:
        if isinstance(value, bool):
            raise ValueError
        usd = float(value)
    except (TypeError, ValueError, OverflowError):
        problems.note(where, value, "expected an amount in USD, e.g. 5 or 0.25")
        return None
    if not math.isfinite(usd) or usd <= 0:
        problems.note(where, value, "the budget must be a positive amount in USD")
        return None
    return usd


def _action(value: Any, where: str, problems: Problems) -> str | None:
    if value in ON_EXCEED:
        return value
    problems.note(where, value, f"expected one of {', '.join(ON_EXCEED)}")
    return None


def _budgets(table: Any, where: str, problems: Problems) -> dict[str, float]:
    if table is None:
        return {}
    if not isinstance(table, Mapping):
        problems.note(where, table, "expected a table of name = USD")
        return {}
    out: dict[str, float] = {}
    for name, value in table.items():
        usd = _usd(value, f"{where} {name!r}", problems)
        if usd is not None:
            out[str(name)] = usd
    return out


def _prices(explicit: Any, environ: Mapping[str, str], file: Mapping[str, Any], problems: Problems) -> dict[str, Price]:
    merged: dict[str, Price] = {}
    table = file.get("prices") if isinstance(file, Mapping) else None
    _merge(merged, table, "config file [prices]", problems)
    for item in filter(None, (part.strip() for part in environ.get("DSPY_TOP_PRICES", "").split(","))):
        _parse_into(merged, functools.partial(parse_price, item), "DSPY_TOP_PRICES", item, problems)
    _merge(merged, explicit, "prices", problems)
    return merged


def _merge(merged: dict[str, Price], table: Any, where: str, problems: Problems) -> None:
    if table is None:
        return
    if not isinstance(table, Mapping):
        problems.note(where, table, 'expected a table of MODEL = "IN/OUT"')
        return
    for model, value in table.items():
        _parse_into(
            merged,
            lambda model=model, value=value: (str(model), normalize_one(model, value)),
            f"{where} {model!r}",
            value,
            problems,
        )


def _parse_into(
    merged: dict[str, Price], parse: Callable[[], tuple[str, Price]], where: str, value: Any, problems: Problems
) -> None:
    try:
        model, price = parse()
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        problems.note(where, value, str(exc) or "not a price")
        return
    merged[model] = price
