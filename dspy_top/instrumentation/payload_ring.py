"""The payload ring: what the history pane shows of the latest calls (messages, outputs, usage, options).

Slots (lists in KEPT_FIELDS order, then the payload's reckoned size and whether a recording took it), oldest
first, overwritten in place once made, and call id -> slot. Slots are made as calls come, up to `capacity`, and
reused: keeping each call's record instead made every call leave a long-lived object behind, which brought the
job's next full garbage collection sooner (benchmarks/README.md). Bounded in bytes too (payload.text_size). Used
under the recorder's lock.

A recording job's ring holds up to `capacity` calls (more than the history's `keep`) only for the calls its
recording has not taken yet: past `keep`, a slot the recording took (`taken`) is reused or let go as the next
calls come. Holding 4,096 payloads where 1,000 serve the viewers cost a job about 10 µs a call (DSPy's objects
held longer: the caches and the collector; benchmarks/README.md, Recordings). The objects are let go on the
job's thread, as they are when it reuses a slot, never on the server's.
"""

from __future__ import annotations

import operator
from collections import deque

from dspy_top.instrumentation.call_record import CallRecord
from dspy_top.instrumentation.payload import BYTES_PER_TOKEN, text_size

# The ring's bound in bytes, beside its bound in calls (DSPY_TOP_HISTORY_BYTES).
DEFAULT_HISTORY_BYTES = 64 * 2**20
# What one kept payload is reckoned at beside its text: its slot, the containers, the options.
PAYLOAD_OVERHEAD = 512
# How many ids of payloads dropped for size are remembered, to say so when one is asked for
# (the viewer's history holds 10,000 calls).
SIZE_DROPS_REMEMBERED = 10_000

# What a payload shows of a call (payload.materialize reads these names), in slot order; a slot
# also holds the payload's reckoned size (SIZE) and, last, whether a recording took it (TAKEN).
KEPT_FIELDS = (
    "id",
    "model",
    "model_type",
    "messages",
    "prompt",
    "lm_options",
    "call_options",
    "outputs",
    "usage",
    "dspy_cost",
    "cost_details",
    "error",
    "cache_hit",
    "response_model",
)
_PARTS = KEPT_FIELDS[2:11]  # set by the hooks: a record finished another way may lack them
_TEXT_PARTS = ("messages", "prompt", "outputs")  # what a payload's size is reckoned from without tokens
SIZE = len(KEPT_FIELDS)
TAKEN = SIZE + 1
_EMPTY_SLOT = (None,) * (len(KEPT_FIELDS) + 2)


class KeptCall(tuple):
    """One call's payload sources, copied out of its ring slot when a viewer (or a recording) asks
    for them: a tuple in KEPT_FIELDS order (then the size), read by name or unpacked; one copy
    in C, where setting each field cost a recording 1.5 µs per call."""

    __slots__ = ()


for _at, _name in enumerate(KEPT_FIELDS):
    setattr(KeptCall, _name, property(operator.itemgetter(_at)))


class PayloadRing:
    """The latest kept calls' payloads, at most `capacity` of them and `max_bytes` in all; past
    `keep` of them (the history's; `capacity` when None), only those a recording has not taken."""

    def __init__(self, capacity: int, max_bytes: int, keep: int | None = None) -> None:
        self.capacity = capacity
        self.keep_count = capacity if keep is None else max(1, min(keep, capacity))
        self.max_bytes = max_bytes
        self.ring: deque[list] = deque()
        self._spare_slots: list[list] = []
        self.payloads: dict[int, list] = {}
        self.payload_bytes = 0
        # Ids of the latest payloads dropped to stay under max_bytes (and a set to look them up).
        self._size_drops: deque[int] = deque()
        self.size_dropped: set[int] = set()

    def keep(self, record: CallRecord) -> None:
        """Copy what the call's payload shows into a slot of the ring; drop the oldest past either bound."""
        # Reckoned from the tokens billed (the text sent and received), or else from the text itself.
        tokens = record.prompt_tokens + record.completion_tokens
        if tokens and not record.cache_hit:
            size = PAYLOAD_OVERHEAD + BYTES_PER_TOKEN * tokens
        else:
            size = PAYLOAD_OVERHEAD + sum(text_size(getattr(record, name, None)) for name in _TEXT_PARTS)
        if size > self.max_bytes:
            self._dropped_for_size(record.id)
            return
        ring, payloads = self.ring, self.payloads
        slot = None
        held = len(ring)
        # The usual case once the ring is full: reuse the oldest (past `keep_count` calls, once taken).
        if held >= self.keep_count and (held >= self.capacity or ring[0][TAKEN]):
            slot = ring.popleft()
            del payloads[slot[0]]
            self.payload_bytes -= slot[SIZE]
            if held > self.keep_count and ring[0][TAKEN]:  # the ring grew while the recording lagged
                self._let_go(ring.popleft())
        while ring and self.payload_bytes + size > self.max_bytes:
            oldest = ring.popleft()
            del payloads[oldest[0]]
            self.payload_bytes -= oldest[SIZE]
            self._dropped_for_size(oldest[0])
            if slot is None:
                slot = oldest
            else:
                oldest[:] = _EMPTY_SLOT  # let go of its parts now: it may wait a while to be reused
                self._spare_slots.append(oldest)
        if slot is None:
            slot = self._spare_slots.pop() if self._spare_slots else list(_EMPTY_SLOT)
        error = record.error
        if error is not None:
            error = f"{error[0]}: {error[1]}"
        try:
            slot[:] = (
                record.id,
                record.model,
                record.model_type,
                record.messages,
                record.prompt,
                record.lm_options,
                record.call_options,
                record.outputs,
                record.usage,
                record.dspy_cost,
                record.cost_details,
                error,
                record.cache_hit,
                record.response_model,
                size,
                False,
            )
        except AttributeError:  # a record finished without the hooks' parts
            slot[:] = (
                record.id,
                record.model,
                *(getattr(record, name, None) for name in _PARTS),
                error,
                record.cache_hit,
                record.response_model,
                size,
                False,
            )
        ring.append(slot)
        payloads[record.id] = slot
        self.payload_bytes += size

    def _let_go(self, slot: list) -> None:
        """A slot taken off the ring whose call is not dropped for size: its parts let go, the slot kept."""
        del self.payloads[slot[0]]
        self.payload_bytes -= slot[SIZE]
        slot[:] = _EMPTY_SLOT
        if len(self._spare_slots) < self.capacity:
            self._spare_slots.append(slot)

    def taken(self, pairs: list[tuple[int, list]]) -> None:
        """A recording took these (call id, slot) pairs: past `keep_count` calls, their slots may go.
        A slot the ring gave to a later call meanwhile (its id changed) is left as it is."""
        for call_id, slot in pairs:
            if slot[0] == call_id:
                slot[TAKEN] = True

    def _dropped_for_size(self, call_id: int) -> None:
        drops = self._size_drops
        if len(drops) >= SIZE_DROPS_REMEMBERED:
            self.size_dropped.discard(drops.popleft())
        drops.append(call_id)
        self.size_dropped.add(call_id)

    def get(self, call_id: int) -> KeptCall | None:
        slot = self.payloads.get(call_id)
        return None if slot is None else KeptCall(slot)

    def missing_reason(self, call_id: int) -> str | None:
        """Why `get(call_id)` found nothing, when it is not the usual (older than the last calls kept)."""
        if call_id in self.size_dropped:
            return (
                f"dropped to keep this process's payloads under {self.max_bytes / 2**20:g} MiB (DSPY_TOP_HISTORY_BYTES)"
            )
        return None
