"""A recording's LM calls written out: one row per call as JSON lines or CSV, or the last calls
as DSPy's `inspect_history` prints them.

Rows come from the recording's `calls` batches, column by column (a million calls are
written in seconds); their sums are the process's totals whenever every call was stored
(`Totals` checks that). Standard library only, and the recording reader.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import Any, TextIO

from dspy_top.protocol import CALL, CALLS, SNAPSHOT
from dspy_top.recording.checked import moment
from dspy_top.recording.reader import Recording

# The columns of every format, in order (docs/recording-format.md, "Export").
COLUMNS = (
    "pid",
    "time",
    "start",
    "call_id",
    "seq",
    "module",
    "module_class",
    "model",
    "response_model",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_saved_usd",
    "cache_hit",
    "error",
    "error_message",
    "retries",
    "latency_s",
    "eval",
    "trial",
    "compile",
    "stream",
)
PAYLOAD_COLUMNS = ("messages", "response")
# Where each exported column comes from in a `calls` row (protocol.CALL_FIELDS names).
_FROM = {"call_id": "id", "module": "path", "latency_s": "latency"}
_DIRECT = (
    "start",
    "seq",
    "module_class",
    "model",
    "response_model",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_saved_usd",
    "cache_hit",
    "error",
    "error_message",
    "retries",
    "stream",
)
_SUMMED = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_saved_usd",
    "retries",
)


@dataclass
class Totals:
    """What the exported rows add up to, beside the process's own totals."""

    calls: int = 0
    errors: int = 0
    cache_hits: int = 0
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(_SUMMED, 0))

    def add(self, columns: dict[str, list[Any]]) -> None:
        self.calls += len(columns["call_id"])
        self.errors += len(columns["error"]) - columns["error"].count(None)
        hits = columns["cache_hit"]
        self.cache_hits += hits.count(True)
        for name in _SUMMED:
            values = columns[name]
            if name in ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens") and True in hits:
                values = [v for v, hit in zip(values, hits) if not hit]  # a cache hit bills no tokens
            self.sums[name] += sum(v for v in values if v is not None)

    def matches(self, totals: dict[str, Any]) -> list[str]:
        """Where the rows differ from the process's totals (counts exactly; money to a rounding)."""
        differences = []
        for name, mine in (
            ("calls", self.calls),
            ("errors", self.errors),
            ("cache_hits", self.cache_hits),
            *self.sums.items(),
        ):
            theirs = totals.get(name)
            if not isinstance(theirs, (int, float)):
                continue
            same = abs(mine - theirs) <= 1e-9 * max(1.0, abs(theirs)) if isinstance(mine, float) else mine == theirs
            if not same:
                differences.append(f"{name} {mine:,} in the rows, {theirs:,} in the process's totals")
        return differences


class CallRows:
    """A recording's calls as export rows (COLUMNS order), batch by batch, in the order they finished."""

    def __init__(self, recording: Recording, trials: dict[str, int] | None = None) -> None:
        self.recording = recording
        self.pid = recording.hello.get("pid")
        self.trials = trials or {}
        self._scopes: dict[tuple, tuple[Any, Any, Any]] = {}
        self._seconds: dict[int, str] = {}

    def batches(self) -> Iterator[dict[str, list[Any]]]:
        """Each `calls` batch (and snapshot's calls) as columns: name -> values."""
        for message in self.recording.messages():
            kind = message.get("t")
            if kind == CALLS:
                fields = list(message.get("fields") or ())
                rows = message.get("rows") or ()
                if rows and "id" in fields:
                    yield self._columns(fields, list(zip(*rows)))
            elif kind in (CALL, SNAPSHOT):
                calls = [message] if kind == CALL else list(message.get("calls") or ())
                calls = [c for c in calls if isinstance(c, dict) and "id" in c]
                if calls:
                    fields = list(calls[0])
                    yield self._columns(fields, [[c.get(f) for c in calls] for f in fields])

    def _columns(self, fields: list[str], columns: list[Any]) -> dict[str, list[Any]]:
        source = dict(zip(fields, columns))
        count = len(source["id"])
        none = [None] * count
        out: dict[str, list[Any]] = {"pid": [self.pid] * count}
        for name in _DIRECT:
            out[name] = list(source.get(name) or none)
        for name, origin in _FROM.items():
            out[name] = list(source.get(origin) or none)
        out["time"] = list(map(self._time, out["start"]))
        scopes = [self._scope(s) for s in source.get("scopes") or none]
        out["eval"], out["trial"], out["compile"] = (list(column) for column in zip(*scopes))
        return out

    def _time(self, start: Any) -> str | None:
        """Local ISO 8601 with the offset, to the microsecond."""
        start = moment(start)
        if start is None:
            return None
        second = int(start // 1)
        prefix = self._seconds.get(second)
        if prefix is None:
            local = time.localtime(second)
            offset = local.tm_gmtoff or 0
            sign = "+" if offset >= 0 else "-"
            self._seconds[second] = prefix = (
                time.strftime("%Y-%m-%dT%H:%M:%S", local),
                f"{sign}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}",
            )
        return f"{prefix[0]}.{int((start - second) * 1e6):06d}{prefix[1]}"

    def _scope(self, scopes: Any) -> tuple[Any, Any, Any]:
        """(innermost evaluation, its trial number, innermost compile) of a call's scopes."""
        key = tuple(scopes) if isinstance(scopes, (list, tuple)) else ()
        found = self._scopes.get(key)
        if found is None:
            evals = [s for s in key if isinstance(s, str) and s.startswith("eval-")]
            compiles = [s for s in key if isinstance(s, str) and s.startswith("compile-")]
            evaluation = evals[-1] if evals else None
            found = self._scopes[key] = (evaluation, self.trials.get(evaluation), compiles[-1] if compiles else None)
        return found


def trial_numbers(recording: Recording) -> dict[str, int]:
    """Each evaluation's trial number, as the optimizer view numbers them (from the end state's scopes)."""
    from dspy_top.model.optimizers import derive
    from dspy_top.model.scopes import scope_from_wire

    end = recording.end_state()
    states = []
    for wire in end.state.scopes.values():
        try:
            states.append(scope_from_wire("recording", 0, wire, None))
        except (TypeError, ValueError):
            continue
    return {trial.id: trial.number for run in derive(states, end.ended_at) for trial in run.trials}


# --- the formats ---------------------------------------------------------------------------------


class JsonLines:
    """One JSON object per call, written a batch at a time: each column is encoded in one pass, in C
    where it can be (`map` over a memo of the column's values, most of which repeat)."""

    def __init__(self, out: TextIO, payloads: Callable[[int], dict[str, Any] | None] | None = None) -> None:
        self.out = out
        self.payloads = payloads
        names = COLUMNS + (PAYLOAD_COLUMNS if payloads is not None else ())
        self.template = "{" + ",".join(f'"{name}":%s' for name in names) + "}\n"
        self._memos = {name: _Memo() for name in COLUMNS}  # one per column: True and 1 never meet

    def write(self, columns: dict[str, list[Any]]) -> None:
        encoded = [self._encode(name, columns[name]) for name in COLUMNS]
        if self.payloads is not None:
            found = [self.payloads(call_id) for call_id in columns["call_id"]]
            encoded.append([_json(p.get("messages")) if p else "null" for p in found])
            encoded.append([_json(p.get("outputs")) if p else "null" for p in found])
        self.out.write("".join(map(self.template.__mod__, zip(*encoded))))

    def _encode(self, name: str, values: list[Any]) -> Iterable[str]:
        if name in _DISTINCT:  # numbers that seldom repeat: repr is what json writes for them
            if _NUMBERS.issuperset(map(type, values)):
                texts = list(map(repr, values))
                if _NOT_JSON.isdisjoint(texts):
                    return texts
            return list(map(_number, values))  # also what the file holds where a number should be
        if name == "time":
            return map(encode_basestring, values) if None not in values else map(_text, values)
        if name == "error_message":
            return [_text(value) for value in values]
        return map(self._memos[name].__getitem__, values)


class _Memo(dict):
    """A column's values, each encoded once."""

    def __missing__(self, value: Any) -> str:
        text = _json(value)
        if len(self) < 100_000:
            self[value] = text
        return text


_DISTINCT = ("start", "latency_s", "cost_usd", "cost_saved_usd", "call_id", "seq")
_NOT_JSON = {"None", "nan", "inf", "-inf"}  # what repr gives and JSON spells otherwise
_NUMBERS = {int, float, type(None)}


class Csv:
    """The same columns as CSV (empty for unknown), with a header row."""

    def __init__(self, out: TextIO, payloads: Callable[[int], dict[str, Any] | None] | None = None) -> None:
        self.writer = csv.writer(out, lineterminator="\n")
        self.payloads = payloads
        self.writer.writerow(COLUMNS + (PAYLOAD_COLUMNS if payloads is not None else ()))

    def write(self, columns: dict[str, list[Any]]) -> None:
        table = [columns[name] for name in COLUMNS]
        if self.payloads is not None:
            found = [self.payloads(call_id) for call_id in columns["call_id"]]
            table.append([_json(p.get("messages")) if p else None for p in found])
            table.append([_json(p.get("outputs")) if p else None for p in found])
        self.writer.writerows(zip(*table))


_ENCODE = json.JSONEncoder(ensure_ascii=False, default=str, allow_nan=False).encode


def _json(value: Any) -> str:
    try:
        return _ENCODE(value)
    except ValueError:  # NaN or an infinity somewhere in it: JSON has no such number, null says unknown
        return _ENCODE(_without_nan(value))


def _without_nan(value: Any) -> Any:
    if type(value) is float:
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _without_nan(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_without_nan(item) for item in value]
    return value


_NOT_ASCII = re.compile("[^\x00-\x7f]")


def ascii_json(text: str) -> str:
    """JSON text with every character past ASCII written as a JSON escape: the same JSON, for a
    stream that cannot take Unicode (outside strings, JSON is ASCII already)."""
    return text if text.isascii() else _NOT_ASCII.sub(_json_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code > 0xFFFF:  # as a UTF-16 surrogate pair, as JSON spells it
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


def _number(value: Any) -> str:
    kind = type(value)
    if kind is float:
        return float.__repr__(value) if math.isfinite(value) else "null"  # what json writes for a float
    if kind is int:
        return int.__repr__(value)
    return "null" if value is None else _json(value)


def _text(value: Any) -> str:
    if value is None:
        return "null"
    return encode_basestring(value) if type(value) is str else _json(value)


# --- inspect_history -------------------------------------------------------------------------------


def last_calls(rows: CallRows, count: int) -> list[dict[str, Any]]:
    """The last `count` calls to finish, as {column: value}."""
    kept: deque[dict[str, Any]] = deque(maxlen=max(1, count))
    for columns in rows.batches():
        names = list(columns)
        for values in zip(*(columns[name] for name in names)):
            kept.append(dict(zip(names, values)))
    return list(kept)


def inspect_text(
    call: dict[str, Any],
    payload: dict[str, Any] | None,
    colors: bool = False,
    clean: Callable[[str], str] = lambda text: text,
) -> str:
    """One call as DSPy's `inspect_history` prints it: when, each message by role, the response.
    `clean` is applied to everything the job or the LM wrote (a terminal needs it inert)."""

    def paint(code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if colors else text

    when = call.get("time") or "Unknown time"
    parts = ["\n\n\n\n", paint("34", f"[{when}]") + "\n\n"]
    if payload is None:
        parts.append(clean(f"(the payload of call {call.get('call_id')} is not in the recording)") + "\n\n")
        return "".join(parts)
    for message in payload.get("messages") or []:
        if not isinstance(message, dict):
            continue
        role = clean(str(message.get("role") or "?"))
        parts.append(paint("31", f"{role.capitalize()} message:") + "\n\n")
        parts.append(clean(_content(message.get("content"))) + "\n")
        parts.append(_tool_calls(message.get("tool_calls"), paint, clean))
        parts.append("\n\n")
    outputs = payload.get("outputs")
    if payload.get("error"):
        parts.append(paint("31", "Error:") + "\n\n" + clean(str(payload["error"])) + "\n\n")
    elif isinstance(outputs, list) and outputs:
        first = outputs[0]
        if isinstance(first, dict):
            if first.get("text"):
                parts.append(
                    paint("31", "Response:") + "\n\n" + paint("32", clean(str(first["text"]).strip())) + "\n\n"
                )
            parts.append(_tool_calls(first.get("tool_calls"), paint, clean))
        else:
            parts.append(paint("31", "Response:") + "\n\n" + paint("32", clean(str(first).strip())) + "\n\n")
        if len(outputs) > 1:
            parts.append(paint("31", f" \t (and {len(outputs) - 1} other completions)"))
    return "".join(parts)


def _content(content: Any) -> str:
    if isinstance(content, str):
        return content.strip()
    if not isinstance(content, list):
        return "" if content is None else str(content).strip()
    lines = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind == "text":
            lines.append(str(part.get("text") or "").strip())
        elif kind == "image_url":
            url = str((part.get("image_url") or {}).get("url") or "")
            if "base64," in url:
                head, _, data = url.partition("base64,")
                lines.append(f"<{head}base64,<IMAGE BASE 64 ENCODED({len(data)})>")
            else:
                lines.append(f"<image_url: {url}>")
        elif kind == "input_audio":
            audio = part.get("input_audio") or {}
            lines.append(
                f"<audio format='{audio.get('format')}' base64-encoded, length={len(audio.get('data') or '')}>"
            )
        elif kind in ("file", "input_file"):
            info = part.get("file") or part.get("input_file") or {}
            lines.append(
                f"<file: name:{info.get('filename', '')}, id:{info.get('file_id', '')}, "
                f"data_length:{len(info.get('file_data') or '')}>"
            )
    return "\n".join(lines)


def _tool_calls(calls: Any, paint: Callable[[str, str], str], clean: Callable[[str], str]) -> str:
    if not isinstance(calls, list) or not calls:
        return ""
    lines = [paint("31", "Tool calls:") + "\n"]
    for call in calls:
        if not isinstance(call, dict):
            continue
        function = call.get("function") or {}
        arguments = function.get("arguments") if isinstance(function, dict) else None
        if arguments is None:
            arguments = call.get("args", call.get("arguments", {}))
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                pass
        name = (function.get("name") if isinstance(function, dict) else None) or call.get("name", "<unknown>")
        shown = json.dumps(arguments, ensure_ascii=False) if isinstance(arguments, (dict, list)) else str(arguments)
        lines.append(paint("32", clean(f"{name}: {shown}")) + "\n")
    return "".join(lines)
