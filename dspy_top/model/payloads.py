"""The answer to a payload request (a call's full prompt and response), as the collector delivers it,
and the text of the payloads read so far, which `/` searches.

Plain values in the model so that the collector's thread, the inspect screen and the fleet share
them without one importing the other.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PayloadAnswer:
    """The answer to one payload request: the payload, or why there is none."""

    process: str
    call_id: int
    payload: dict[str, Any] | None
    reason: str | None = None


TEXT_PER_CALL = 64 * 1024  # characters of one call's prompt and response kept for searching
TEXT_TOTAL = 32 * 1024 * 1024  # characters kept in all: the oldest go first


def searchable(payload: Mapping[str, Any]) -> str:
    """A payload's messages, response, tool calls and error as one lowercase text, for `/` to search."""
    parts: list[str] = []

    def walk(value: Any, depth: int = 0) -> None:
        if depth > 8:
            return
        if isinstance(value, str):
            parts.append(value)
        elif isinstance(value, Mapping):
            for key, item in value.items():
                if key not in ("role", "type", "id", "index", "finish_reason", "logprobs"):
                    walk(item, depth + 1)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item, depth + 1)

    for key in ("messages", "outputs", "error"):
        walk(payload.get(key))
    return "\n".join(parts)[:TEXT_PER_CALL].lower()


class PayloadTexts(Mapping[tuple[str, int], str]):
    """The searchable text of the calls whose payloads the viewer read, bounded (oldest out first).

    Also remembers the calls whose payload the process no longer had (`unavailable`), so a search
    never asks for them twice."""

    def __init__(self, total: int = TEXT_TOTAL) -> None:
        self.total = total
        self._texts: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._size = 0
        self.unavailable: set[tuple[str, int]] = set()

    def __getitem__(self, key: tuple[str, int]) -> str:
        return self._texts[key]

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)

    def add(self, answer: PayloadAnswer) -> None:
        key = (answer.process, answer.call_id)
        if answer.payload is None:
            self.unavailable.add(key)
            return
        if key in self._texts:
            return
        text = searchable(answer.payload)
        self._texts[key] = text
        self._size += len(text)
        while self._size > self.total and self._texts:
            _, old = self._texts.popitem(last=False)
            self._size -= len(old)

    def known(self, key: tuple[str, int]) -> bool:
        """Read already, or known to be gone: nothing to ask the process for."""
        return key in self._texts or key in self.unavailable

    def forget(self, process: str) -> None:
        for key in [k for k in self._texts if k[0] == process]:
            self._size -= len(self._texts.pop(key))
        self.unavailable = {k for k in self.unavailable if k[0] != process}

    def rekey(self, old: str, new: str) -> None:
        """The calls of process `old` are known as `new`'s from now on (see `Fleet.attach`)."""
        self._texts = OrderedDict(((new, k[1]) if k[0] == old else k, text) for k, text in self._texts.items())
        self.unavailable = {(new, k[1]) if k[0] == old else k for k in self.unavailable}
