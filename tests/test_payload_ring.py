"""The payload ring's bounds: calls and bytes, grown as calls come, and a reason for what it dropped."""

from __future__ import annotations

import time
import tracemalloc
import weakref

import pytest

from dspy_top import client, config, protocol
from dspy_top.instrumentation import payload
from dspy_top.instrumentation.payload import materialize
from dspy_top.instrumentation.payload_ring import (
    DEFAULT_HISTORY_BYTES,
    PAYLOAD_OVERHEAD,
    SIZE_DROPS_REMEMBERED,
    TAKEN,
)
from dspy_top.instrumentation.recorder import Recorder
from tests.helpers.jobs import JobProcess, runtime_dir


def keep_call(rec: Recorder, text: str, tokens: int = 0) -> int:
    """A call whose payload is `text`; reckoned by its tokens when it has some, else by its text."""
    record = rec.begin("P", "Predict", ("P",), "m")
    record.messages, record.prompt, record.lm_options, record.call_options = (
        [{"role": "user", "content": text}],
        None,
        {},
        {},
    )
    record.outputs, record.usage, record.cost_details = ["out"], {"prompt_tokens": tokens}, None
    record.model_type, record.dspy_cost = "chat", None
    rec.finish(record, prompt_tokens=tokens, keep=True)
    return record.id


def test_the_ring_keeps_the_newest_payloads_within_its_bytes():
    size = PAYLOAD_OVERHEAD + len("user") + 1000 + len("out")  # every string of the payload
    rec = Recorder(history_capacity=100, history_bytes=5 * size + 10)
    ids = [keep_call(rec, "x" * 1000) for _ in range(12)]
    rec.fold()
    assert list(rec.payload_ring.payloads) == ids[-5:]  # five fit; the count (100) never bound
    assert rec.payload_ring.payload_bytes == 5 * size <= rec.history_bytes
    assert materialize(rec.payload(ids[-1]))["messages"] == [{"role": "user", "content": "x" * 1000}]
    assert rec.payload(ids[0]) is None
    assert "DSPY_TOP_HISTORY_BYTES" in rec.payload_missing_reason(ids[0])
    assert rec.payload_missing_reason(ids[-1]) is None


def test_a_payload_with_billed_tokens_is_reckoned_from_them():
    rec = Recorder(history_capacity=100, history_bytes=10**6)
    keep_call(rec, "short", tokens=1000)
    rec.fold()
    assert rec.payload_ring.payload_bytes == PAYLOAD_OVERHEAD + 4 * 1000


def test_calls_dropped_by_count_have_the_usual_reason():
    rec = Recorder(history_capacity=3)
    ids = [keep_call(rec, "short") for _ in range(5)]
    rec.fold()
    assert list(rec.payload_ring.payloads) == ids[-3:]
    assert rec.payload(ids[0]) is None and rec.payload_missing_reason(ids[0]) is None


def test_a_payload_larger_than_the_whole_bound_is_not_kept_and_says_why():
    rec = Recorder(history_capacity=10, history_bytes=4096)
    small = keep_call(rec, "small")
    big = keep_call(rec, "y" * 10_000)
    rec.fold()
    assert rec.payload(small) is not None  # the big one evicted nothing
    assert rec.payload(big) is None and "MiB" in rec.payload_missing_reason(big)


def test_the_reasons_remembered_are_bounded():
    rec = Recorder(history_capacity=5, history_bytes=300)
    ids = [keep_call(rec, "z" * 400) for _ in range(SIZE_DROPS_REMEMBERED + 10)]
    rec.fold()
    assert len(rec.payload_ring.size_dropped) == SIZE_DROPS_REMEMBERED
    assert rec.payload_missing_reason(ids[0]) is None and rec.payload_missing_reason(ids[-1]) is not None


def test_a_million_call_history_costs_nothing_until_calls_come():
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        rec = Recorder(history_capacity=1_000_000)
        allocated = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert allocated < 256 * 1024  # preallocated slots cost 180 MiB here
    keep_call(rec, "one")
    rec.fold()
    assert len(rec.payload_ring.payloads) == 1


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", None),
        ("4096", 4096),
        ("64M", 64 * 2**20),
        ("64MiB", 64 * 2**20),
        ("512k", 512 * 2**10),
        ("1GB", 2**30),
        ("1.5M", int(1.5 * 2**20)),
        ("lots", "problem"),
        ("-5", "problem"),
        ("100", "problem"),
    ],
)
def test_history_bytes_from_the_environment(text, expected):
    settings, problems = config.job_settings(environ={"DSPY_TOP_HISTORY_BYTES": text}, file={})
    if expected == "problem":  # said, and left at its default
        assert [p.split("=")[0] for p in problems] == ["DSPY_TOP_HISTORY_BYTES"]
        assert settings.history_bytes == config.JobSettings().history_bytes
    else:
        assert problems == []
        assert settings.history_bytes == (expected or config.JobSettings().history_bytes)


def test_the_default_bound_is_the_recorders():
    assert config.JobSettings().history_bytes == DEFAULT_HISTORY_BYTES


@pytest.mark.slow
def test_a_viewer_is_told_a_payload_was_dropped_for_size():
    directory = runtime_dir()
    job = JobProcess(directory, "--lm", "sim", env={"DSPY_TOP_HISTORY_BYTES": "6K"})
    try:
        job.run(6)
        with client.Connection(job.socket_path) as connection:
            snapshot_message = next(m for m in connection.poll(5.0) if m["t"] == protocol.SNAPSHOT)
            ids = [call["id"] for call in snapshot_message["calls"]]
            assert len(ids) == 12
            assert connection.get_payload(ids[-1])["messages"]  # the newest is kept
            request = connection.request_payload(ids[0])
            deadline = time.monotonic() + 10
            answer = None
            while answer is None and time.monotonic() < deadline:
                answer = next(
                    (m for m in connection.poll(0.5) if m["t"] == protocol.PAYLOAD and m["req"] == request), None
                )
            assert answer is not None and answer["found"] is False
            assert "DSPY_TOP_HISTORY_BYTES" in answer["reason"]
        the_inspector_says_so(directory, len(ids))
    finally:
        job.exit()
        job.kill()


def the_inspector_says_so(directory, calls: int) -> None:
    """The live view's inspector on the oldest call: its payload is gone, and why (the byte bound)."""
    from dspy_top.viewer.components.history_table import HistoryTable
    from dspy_top.viewer.screens.inspect import InspectScreen
    from tests.helpers.live_app import run_app
    from tests.helpers.waiting import pilot_wait

    async def script(app, pilot):
        history = app.query_one(HistoryTable)
        await pilot_wait(pilot, lambda: history.row_count == calls, "every call in the history")
        history.focus()
        await pilot.press("home", "enter")
        assert isinstance(app.screen, InspectScreen)
        await pilot_wait(pilot, lambda: app.screen.has_class("-gone"), "the payload said to be gone")
        shown = str(app.screen.query_one("#inspect-text").render())
        assert "The payload of this call is gone: dropped to keep this process's payloads under" in shown
        assert "(DSPY_TOP_HISTORY_BYTES)" in shown

    run_app(directory, script, size=(120, 40), kept_payloads=0)


def test_the_lm_options_a_payload_keeps_are_plain_data():
    class Client:
        """An object a program passed to its LM (an HTTP client, a response_format class...)."""

    class LM:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    plain_lm = LM(temperature=0.0, max_tokens=None, api_base="http://127.0.0.1:1/v1")
    assert payload.lm_options(plain_lm) is plain_lm.kwargs  # plain already: kept as it is, no copy
    assert payload.lm_options(plain_lm) is plain_lm.kwargs  # ... and not looked at again
    client = Client()
    plain_lm.kwargs["http_client"] = client  # the same dict, changed: looked at again
    for options in (payload.lm_options(plain_lm), payload.lm_options(LM(temperature=0.0, response_format=Client))):
        assert all(type(value) in (str, int, float, bool, type(None)) for value in options.values()), options
    assert "Client" in payload.lm_options(LM(response_format=Client))["response_format"]


class Held:
    """A call's output the test can watch die (a weak reference to it)."""


def keep_held(rec: Recorder) -> tuple[int, weakref.ref]:
    held = Held()
    record = rec.begin("P", "Predict", ("P",), "m")
    record.messages, record.prompt, record.lm_options, record.call_options = ([], None, {}, {})
    record.outputs, record.usage, record.cost_details = [held], {}, None
    record.model_type, record.dspy_cost = "chat", None
    rec.finish(record, prompt_tokens=1, keep=True)
    return record.id, weakref.ref(held)


def mark_taken(call_ids: list[int], slots: dict[int, list]) -> None:
    """A walk for Recorder.take_payloads marking taken each slot it finds (as the C walk marks
    those it packs, payload_pack.py)."""
    for call_id in call_ids:
        slot = slots.get(call_id)
        if slot is not None and slot[0] == call_id:
            slot[TAKEN] = True


def test_a_recording_job_holds_past_the_history_only_the_payloads_not_taken():
    """A recording's ring (payload_capacity) keeps a call past the history's count only until the
    recording has taken it; then the job's next calls let its objects go."""
    rec = Recorder(history_capacity=3, payload_capacity=10)
    calls = [keep_held(rec) for _ in range(10)]
    rec.fold()
    assert len(rec.payload_ring.ring) == 10 and all(ref() is not None for _, ref in calls)  # none taken
    calls.append(keep_held(rec))  # the hard bound: the oldest untaken call is dropped (a lost payload)
    rec.fold()
    assert calls[0][1]() is None and rec.payload(calls[0][0]) is None
    assert len(rec.payload_ring.ring) == 10

    ids = [call_id for call_id, _ in calls]
    taken = rec.payloads_of(ids[1:6], take=True)  # the Python pass's copies: taken as copied
    assert [kept.id for kept in taken] == ids[1:6]
    rec.take_payloads(ids[6:8], mark_taken)  # as a recording's C walk marks the slots it packed
    del taken
    for _ in range(3):
        calls.append(keep_held(rec))
    rec.fold()
    # Each call reused one taken slot and let one more go: 1..6 are gone, 7 and on still held.
    assert all(ref() is None for _, ref in calls[:7]) and all(ref() is not None for _, ref in calls[7:])
    assert list(rec.payload_ring.payloads) == [call_id for call_id, _ in calls[7:]]
    assert len(rec.payload_ring.ring) == 7
    # The ring never goes below the history's count: 8 and 9 were taken, 10 and on were not.
    rec.take_payloads(ids[6:], mark_taken)
    for _ in range(5):
        calls.append(keep_held(rec))
    rec.fold()
    held = [call_id for call_id, ref in calls if ref() is not None]
    assert held == list(rec.payload_ring.payloads) and len(held) >= 3
    assert rec.payload_ring.payload_bytes == sum(slot[-2] for slot in rec.payload_ring.ring)
    newest = [call_id for call_id, _ in calls[-3:]]
    assert held[-3:] == newest


def test_a_slot_given_to_a_later_call_is_not_marked_taken():
    rec = Recorder(history_capacity=2)
    first, _ = keep_held(rec)
    rec.fold()
    slot = rec.payload_ring.payloads[first]
    keep_held(rec), keep_held(rec)  # the ring of two came round: the slot now holds the third call
    rec.fold()
    assert slot[0] != first
    rec.payload_ring.taken([(first, slot)])
    assert slot[-1] is False


def test_without_a_recording_the_ring_is_the_history():
    rec = Recorder(history_capacity=4)
    calls = [keep_held(rec) for _ in range(9)]
    rec.fold()
    assert [ref() is not None for _, ref in calls] == [False] * 5 + [True] * 4
    assert rec.payload_ring.capacity == rec.payload_ring.keep_count == 4
