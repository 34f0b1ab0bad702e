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
