"""Messages threads post to the app (Textual's post_message is thread-safe)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from dspy_top.model.payloads import PayloadAnswer


@dataclass
class PayloadArrived(Message):
    """A call's payload (or why there is none) came back from its process."""

    answer: PayloadAnswer


@dataclass
class Notice(Message):
    """Something the collector's thread wants the user to hear about (e.g. a stop request that failed)."""

    text: str


class OffersChanged(Message):
    """The processes `A` could attach to changed (the offers poller looked at /proc again)."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, OffersChanged)  # the app reads the latest offers: one message will do


@dataclass
class AttachDone(Message):
    """An attach started with `A` ended: `line` is what `dspy-top attach` would print, `ok` whether it attached."""

    pid: int
    line: str
    ok: bool
