"""One row per LM call (the history pane), and the bounded, deduplicated history across processes."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple


class CallSummary(NamedTuple):
    """One finished LM call as the `call` event describes it; `cost_usd` None means unknown.

    A NamedTuple rather than a frozen dataclass: the viewer builds tens of thousands a
    second and tuple construction is several times cheaper.
    """

    process: str  # the process key (its socket path)
    pid: int
    id: int
    start: float
    latency: float
    path: str
    module_class: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cost_usd: float | None
    cost_saved_usd: float | None
    cache_hit: bool
    retries: int
    error: str | None
    error_message: str | None
    response_model: str | None
    scopes: tuple[str, ...]
    usage_known: bool = True  # False: DSPy did not report this call's tokens (they read 0 but are unknown)

    @property
    def key(self) -> tuple[str, int]:
        return (self.process, self.id)

    @property
    def end(self) -> float:
        return self.start + self.latency

    @classmethod
    def from_row(cls, process: str, pid: int, row: tuple) -> CallSummary:
        """From a checked row (`schema.CALL_COLUMNS` order): the viewer's hot path, so no copying."""
        return _new(cls, (process, pid, *row))

    @classmethod
    def from_wire(cls, process: str, pid: int, wire: Mapping[str, Any]) -> CallSummary:
        """From one `call` map, checked on the way in (raises `schema.BadMessage`)."""
        from dspy_top import schema  # the viewer's start needs none of the schema

        return _new(cls, (process, pid, *schema.call_map(wire)))

    def matches(self, query: CallQuery) -> bool:
        return query.matches(self)


_new = tuple.__new__


@dataclass(frozen=True)
class CallQuery:
    """A history filter: `module:X`, `model:Y`, `pid:N`, `scope:eval-N`, `err`, `cache` and free words (all must match).

    A free word matches a call's module, model, class or error, or its prompt and response when the
    viewer has read them (`texts`: lowercase text per call key, see payloads.PayloadTexts)."""

    text: str = ""

    @cached_property
    def parts(self) -> tuple[tuple[str, str], ...]:
        parts = []
        for word in self.text.lower().split():
            field, sep, value = word.partition(":")
            parts.append((field, value) if sep and field in ("module", "model", "pid", "scope") else ("", word))
        return tuple(parts)

    def _parts(self) -> tuple[tuple[str, str], ...]:
        return self.parts

    @property
    def words(self) -> tuple[str, ...]:
        """The free words: what a search of prompts and responses looks for."""
        return tuple(
            value for field, value in self.parts if not field and value not in ("err", "error", "errors", "cache")
        )

    def matches(self, call: CallSummary, texts: Mapping[tuple[str, int], str] | None = None) -> bool:
        for field, value in self.parts:
            if field == "module" and value not in call.path.lower():
                return False
            if field == "model" and value not in call.model.lower():
                return False
            if field == "pid" and value != str(call.pid):
                return False
            if field == "scope" and value not in call.scopes:  # the calls of one evaluation or compile
                return False
            if not field:
                if value in ("err", "error", "errors") and call.error:
                    continue
                if value == "cache" and call.cache_hit:
                    continue
                haystack = f"{call.path} {call.model} {call.module_class} {call.error or ''} {call.error_message or ''}"
                if value in haystack.lower():
                    continue
                content = texts.get((call[0], call[2])) if texts else None
                if content is None or value not in content:
                    return False
        return True

    def matches_module(self, path: str) -> bool:
        """Does a module path pass the filter (model/pid parts ignored)?"""
        for field, value in self._parts():
            if field in ("module", "") and value not in path.lower() and value not in ("err", "cache"):
                return False
        return True


HISTORY = 10_000  # calls the viewer holds by default (`--history`)


class History:
    """The most recent calls of every process, oldest first, each (process, id) once."""

    def __init__(self, capacity: int = HISTORY) -> None:
        self.capacity = max(1, capacity)
        self._calls: deque[CallSummary] = deque()
        self._seen: set[tuple[str, int]] = set()
        self.added = 0  # every call ever added: lets the UI know what is new

    def __len__(self) -> int:
        return len(self._calls)

    def __iter__(self) -> Iterator[CallSummary]:
        return iter(self._calls)

    def add(self, call: CallSummary) -> bool:
        key = (call[0], call[2])  # (process, id), without the property call: this is the hot path
        if key in self._seen:
            return False
        if len(self._calls) >= self.capacity:
            old = self._calls.popleft()
            self._seen.discard((old[0], old[2]))
        self._calls.append(call)
        self._seen.add(key)
        self.added += 1
        return True

    def holds(self, key: tuple[str, int]) -> bool:
        return key in self._seen

    def extend(self, calls: Iterable[CallSummary]) -> None:
        """Add new calls (each not held yet), in order."""
        held, seen = self._calls, self._seen
        capacity = self.capacity
        for call in calls:
            key = (call[0], call[2])
            if key in seen:
                continue
            if len(held) >= capacity:
                old = held.popleft()
                seen.discard((old[0], old[2]))
            held.append(call)
            seen.add(key)
            self.added += 1

    def merge(self, calls: Iterable[CallSummary]) -> None:
        """Add older calls (a late attach's snapshot) and keep the whole history in time order."""
        fresh = [c for c in calls if c.key not in self._seen]
        if not fresh:
            return
        merged = sorted([*self._calls, *fresh], key=lambda c: (c.end, c.process, c.id))
        merged = merged[-self.capacity :]
        self._calls = deque(merged)
        self._seen = {c.key for c in merged}
        self.added += len(fresh)

    def forget(self, process: str) -> None:
        kept = [c for c in self._calls if c.process != process]
        self._calls = deque(kept)
        self._seen = {c.key for c in kept}

    def rekey(self, old: str, new: str) -> None:
        """The calls of process `old` are known as `new`'s from now on (see `Fleet.attach`)."""
        self._calls = deque(c._replace(process=new) if c.process == old else c for c in self._calls)
        self._seen = {c.key for c in self._calls}

    def recent(
        self,
        limit: int,
        query: CallQuery | None = None,
        process: str | None = None,
        texts: Mapping[tuple[str, int], str] | None = None,
        unsettled: Mapping[str, int] | None = None,
    ) -> tuple[CallSummary, ...]:
        """The newest `limit` calls passing the filters, oldest first, leaving out each process's
        newest `unsettled[process]` calls (received, not yet counted by a stats frame)."""
        held = self._calls
        hide = {key: n for key, n in (unsettled or {}).items() if n > 0}
        if process is None and (query is None or not query.text.strip()) and not hide:
            if limit >= len(held):
                return tuple(held)  # the whole history: the common case, and the cheapest
            if limit <= 0:
                return ()
        out: list[CallSummary] = []
        filtering = query is not None and bool(query.text.strip())
        for call in reversed(held):
            if len(out) >= limit:
                break
            if hide:
                left = hide.get(call[0])
                if left:
                    hide[call[0]] = left - 1
                    continue
            if process is not None and call[0] != process:
                continue
            if filtering and not query.matches(call, texts):
                continue
            out.append(call)
        out.reverse()
        return tuple(out)
