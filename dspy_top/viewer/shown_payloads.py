"""The payloads of the calls the history pane showed, kept by the viewer, so that a call opens after its
process ended (issue 16: `dspy-top demo` and `dspy-top run` never lose what they showed).

A process keeps the payloads of its newest calls (1,000 by default) only while it runs. The viewer
asks it for those of the rows on screen, a bounded number at a time (a screenful a refresh, however
busy the job: its server answers on its own thread), and keeps every answer it gets, the inspect
screen's and the search's too, within a size budget, the oldest out first. A call that was never on
screen while its process ran, and was never opened, is not kept.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dspy_top.model import CallSummary
    from dspy_top.model.payloads import PayloadAnswer

KEPT_CHARS = 64 * 1024 * 1024  # characters of payload kept in all (as JSON text), the oldest out first
IN_FLIGHT = 32  # requests for shown calls outstanding at once
GONE_REMEMBERED = 100_000  # calls known to have no payload left (never asked again), forgotten past this


class ShownPayloads:
    """Payload answers by call key, bounded by size; which shown calls to ask for next."""

    def __init__(self, budget: int = KEPT_CHARS) -> None:
        self.budget = budget
        self._answers: OrderedDict[tuple[str, int], PayloadAnswer] = OrderedDict()
        self._sizes: dict[tuple[str, int], int] = {}
        self._size = 0
        self._asked: set[tuple[str, int]] = set()
        self._gone: set[tuple[str, int]] = set()

    def __contains__(self, key: object) -> bool:
        return key in self._answers

    def get(self, key: tuple[str, int]) -> PayloadAnswer | None:
        answer = self._answers.get(key)
        if answer is not None:
            self._answers.move_to_end(key)
        return answer

    def add(self, answer: PayloadAnswer) -> None:
        """Keep an answer with a payload (from whoever asked); remember one without as gone."""
        key = (answer.process, answer.call_id)
        self._asked.discard(key)
        if answer.payload is None:
            if len(self._gone) >= GONE_REMEMBERED:
                self._gone.clear()
            self._gone.add(key)
            return
        if key in self._answers or self.budget <= 0:
            return
        size = len(json.dumps(answer.payload, default=str))
        self._answers[key] = answer
        self._sizes[key] = size
        self._size += size
        while self._size > self.budget and len(self._answers) > 1:
            old, _ = self._answers.popitem(last=False)
            self._size -= self._sizes.pop(old)

    def forget(self, key: tuple[str, int]) -> None:
        """Drop one call's payload (the inspect screen's `r`: fetch it again)."""
        if key in self._answers:
            del self._answers[key]
            self._size -= self._sizes.pop(key)
        self._gone.discard(key)

    def wanted(self, shown: Iterable[CallSummary], kept_by: Mapping[str, int]) -> list[tuple[str, int]]:
        """The shown calls to ask their process for now: not kept, not asked, not known gone, of a
        process that still keeps payloads (`kept_by`: process key -> how many of its newest it keeps)."""
        if self.budget <= 0:
            return []
        room = IN_FLIGHT - len(self._asked)
        out: list[tuple[str, int]] = []
        for call in shown:
            if len(out) >= room:
                break
            key = (call.process, call.id)
            if (
                call.process in kept_by
                and key not in self._answers
                and key not in self._asked
                and key not in self._gone
            ):
                out.append(key)
        self._asked.update(out)
        return out
