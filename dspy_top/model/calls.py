"""One row per LM call (the history pane), and the bounded, deduplicated history across processes."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Iterable, Iterator, Mapping, NamedTuple


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
    def from_wire(cls, process: str, pid: int, wire: Mapping[str, Any]) -> "CallSummary":
        """Validated on the way in, so a process sending odd types never breaks the screen."""
        get = wire.get
        return _checked(cls, process, pid, wire["id"], get("start"), get("latency"), get("path"),
                        get("module_class"), get("model"), get("prompt_tokens"), get("completion_tokens"),
                        get("cached_tokens"), get("cost_usd"), get("cost_saved_usd"), get("cache_hit"),
                        get("retries"), get("error"), get("error_message"), get("response_model"), get("scopes"),
                        get("usage_known"))

    @classmethod
    def rows_reader(cls, fields: Iterable[str]):
        """A function turning one row of a `calls` batch with these columns into a CallSummary."""
        index = {name: i for i, name in enumerate(fields)}
        width = len(index)
        picks = [index.get(name, width) for name in _ROW_COLUMNS]
        if picks[0] == width:
            raise KeyError("id")
        pick = itemgetter(*picks)  # a column the process did not send reads as None

        def read(process: str, pid: int, row: Any) -> "CallSummary":
            if len(row) != width:
                raise ValueError(f"row of {len(row)} values for {width} columns")
            return _checked(cls, process, pid, *pick((*row, None)))

        return read

    def matches(self, query: "CallQuery") -> bool:
        return query.matches(self)


# The wire columns `_checked` takes, in its order.
_ROW_COLUMNS = ("id", "start", "latency", "path", "module_class", "model", "prompt_tokens", "completion_tokens",
                "cached_tokens", "cost_usd", "cost_saved_usd", "cache_hit", "retries", "error", "error_message",
                "response_model", "scopes", "usage_known")


def _checked(cls, process, pid, call_id, start, latency, path, module_class, model, prompt_tokens,
             completion_tokens, cached_tokens, cost, saved, cache_hit, retries, error, message, response_model,
             scopes, usage_known=None) -> CallSummary:
    return _new(cls, (
        process, pid, int(call_id), float(start or 0.0), float(latency or 0.0),
        str(path or "(direct)"), str(module_class or ""), str(model or "?"),
        int(prompt_tokens or 0), int(completion_tokens or 0), int(cached_tokens or 0),
        float(cost) if cost is not None else None, float(saved) if saved is not None else None,
        bool(cache_hit), int(retries or 0),
        str(error) if error is not None else None, str(message) if message is not None else None,
        str(response_model) if response_model is not None else None,
        tuple(str(s) for s in scopes) if scopes else (),
        usage_known is not False,  # a process that does not send it always knew
    ))


_new = tuple.__new__


@dataclass(frozen=True)
class CallQuery:
    """A history filter: `module:X`, `model:Y`, `pid:N`, `scope:eval-N`, `err`, `cache` and free words (all must match)."""

    text: str = ""

    def _parts(self) -> list[tuple[str, str]]:
        parts = []
        for word in self.text.lower().split():
            field, sep, value = word.partition(":")
            parts.append((field, value) if sep and field in ("module", "model", "pid", "scope") else ("", word))
        return parts

    def matches(self, call: CallSummary) -> bool:
        for field, value in self._parts():
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
                if value not in haystack.lower():
                    return False
        return True

    def matches_module(self, path: str) -> bool:
        """Does a module path pass the filter (model/pid parts ignored)?"""
        for field, value in self._parts():
            if field in ("module", "") and value not in path.lower() and value not in ("err", "cache"):
                return False
        return True

    def matches_model(self, model: str) -> bool:
        for field, value in self._parts():
            if field == "model" and value not in model.lower():
                return False
        return True


class History:
    """The most recent calls of every process, oldest first, each (process, id) once."""

    def __init__(self, capacity: int = 10_000) -> None:
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

    def merge(self, calls: Iterable[CallSummary]) -> None:
        """Add older calls (a late attach's snapshot) and keep the whole history in time order."""
        fresh = [c for c in calls if c.key not in self._seen]
        if not fresh:
            return
        merged = sorted([*self._calls, *fresh], key=lambda c: (c.end, c.process, c.id))
        merged = merged[-self.capacity:]
        self._calls = deque(merged)
        self._seen = {c.key for c in merged}
        self.added += len(fresh)

    def forget(self, process: str) -> None:
        kept = [c for c in self._calls if c.process != process]
        self._calls = deque(kept)
        self._seen = {c.key for c in kept}

    def find(self, key: tuple[str, int]) -> CallSummary | None:
        if key not in self._seen:
            return None
        for call in reversed(self._calls):
            if call.key == key:
                return call
        return None

    def recent(self, limit: int, query: CallQuery | None = None, process: str | None = None) -> tuple[CallSummary, ...]:
        """The newest `limit` calls passing the filters, oldest first."""
        out: list[CallSummary] = []
        for call in reversed(self._calls):
            if process is not None and call.process != process:
                continue
            if query is not None and query.text and not query.matches(call):
                continue
            out.append(call)
            if len(out) >= limit:
                break
        out.reverse()
        return tuple(out)
