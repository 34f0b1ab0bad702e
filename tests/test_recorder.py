"""The recorder's arithmetic and bounds, with a fake clock: no dspy, no sockets."""

import threading
import time

import pytest

from dspy_top import latency
from dspy_top.instrumentation.recorder import CallRecord, Recorder
from dspy_top.protocol import CALL_FIELDS, call_dicts


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def drained(rec):
    """Queued events as the messages they become: call events are queued as CALL_FIELDS rows."""
    return [call_dicts(CALL_FIELDS, [e])[0] if isinstance(e, tuple) else e for e in rec.drain()]


def make(history=5, queue=3):
    clock = FakeClock()
    return Recorder(history_capacity=history, queue_capacity=queue, clock=clock, perf=clock), clock


def test_billed_calls_cache_hits_and_errors_are_counted_apart():
    rec, clock = make(queue=100)
    a = rec.begin("RAG.answer", "Predict", ("RAG", "Predict"), "openai/gpt-4o-mini")
    assert rec.stats()["totals"]["in_flight"] == 1
    clock.now += 0.5
    rec.finish(a, prompt_tokens=100, completion_tokens=20, cached_tokens=10, cost=0.002)
    b = rec.begin("RAG.answer", "Predict", ("RAG", "Predict"), "openai/gpt-4o-mini")
    rec.finish(b, cache_hit=True, saved=0.002, prompt_tokens=0)
    c = rec.begin("Judge", "Predict", ("Judge",), "local/model")
    c.retries += 1  # as the hooks count a retry inside the call
    clock.now += 2.0
    rec.finish(c, error=RuntimeError("boom"))
    d = rec.begin("Judge", "Predict", ("Judge",), "local/model")
    rec.finish(d, prompt_tokens=5, completion_tokens=5, cost=None)

    stats = rec.stats()
    totals = stats["totals"]
    assert (totals["calls"], totals["cache_hits"], totals["errors"], totals["retries"]) == (4, 1, 1, 1)
    assert (totals["prompt_tokens"], totals["completion_tokens"], totals["cached_tokens"]) == (105, 25, 10)
    assert totals["cost_usd"] == 0.002
    assert totals["cost_saved_usd"] == 0.002
    assert totals["unpriced_calls"] == 1
    assert totals["in_flight"] == 0
    assert totals["latency_s"] == 2.5
    modules = {m["path"]: m for m in stats["modules"]}
    assert modules["RAG.answer"]["calls"] == 2 and modules["RAG.answer"]["chain"] == ["RAG", "Predict"]
    assert modules["Judge"]["errors"] == 1
    models = {m["model"]: m for m in stats["models"]}
    assert models["local/model"]["unpriced_calls"] == 1 and models["local/model"]["cost_usd"] == 0.0
    sketch = latency.decode(totals["latency_sketch"])
    assert latency.percentile(sketch, 1.0) == pytest.approx(2.0, rel=latency.ACCURACY)
    assert latency.percentile(sketch, 0.75) == pytest.approx(0.5, rel=latency.ACCURACY)


def test_queue_drops_and_counts_but_counters_stay_exact():
    rec, _ = make(queue=3)
    for _ in range(10):
        rec.finish(rec.begin("P", "Predict", ("P",), "m"), prompt_tokens=1, completion_tokens=1, cost=0.5)
    assert len(rec.drain()) == 3
    stats = rec.stats()
    assert stats["dropped_events"] == 7
    assert stats["totals"]["calls"] == 10 and stats["totals"]["cost_usd"] == 5.0


def test_history_and_payloads_are_bounded():
    rec, _ = make(history=5, queue=100)
    records = []
    for n in range(12):
        record = rec.begin("P", "Predict", ("P",), "m")
        records.append(record)
        rec.finish(record, prompt_tokens=n, keep=n != 11)  # the last one is not kept
    ids = [r.id for r in records]
    snapshot = rec.snapshot()
    assert [c["id"] for c in snapshot["calls"]] == ids[-5:]
    assert rec.payload(ids[0]) is None and rec.payload(ids[-1]) is None
    assert rec.payload(ids[-2]).id == ids[-2] and rec.payload(ids[-6]).id == ids[-6]
    assert rec.payload(ids[-7]) is None  # overwritten in place by the newest
    assert len(rec.payload_ring.payloads) == 5 and set(rec.payload_ring.payloads) == set(ids[-6:-1])


@pytest.mark.slow
def test_the_payload_ring_copies_what_a_payload_shows_and_keeps_no_record():
    import gc

    from dspy_top.instrumentation.payload import materialize

    rec, _ = make(history=3, queue=100)
    record = rec.begin("P", "Predict", ("P",), "m")
    record.model_type, record.prompt, record.messages = "chat", "a prompt", None
    record.lm_options, record.call_options = {"temperature": 0.5}, {"max_tokens": 9}
    record.outputs, record.usage, record.dspy_cost, record.cost_details = ["out"], {"prompt_tokens": 3}, 0.25, None
    rec.finish(record, prompt_tokens=3, cost=0.25, response_model="m-1", keep=True)

    def alive() -> int:
        return sum(1 for o in gc.get_objects() if type(o) is CallRecord)

    gc.collect()  # other tests' records that are already garbage
    call_id, before = record.id, alive()
    del record
    rec.fold()
    gc.collect()
    assert alive() == before - 1  # folded, the record is gone: nothing per call outlives the batch
    assert materialize(rec.payload(call_id)) == {
        "model": "m",
        "model_type": "chat",
        "messages": [{"role": "user", "content": "a prompt"}],
        "options": {"temperature": 0.5, "max_tokens": 9},
        "outputs": ["out"],
        "usage": {"prompt_tokens": 3},
        "cost_usd": 0.25,
        "cache_hit": False,
        "response_model": "m-1",
    }


def test_ring_slots_are_made_as_calls_come_and_then_reused():
    rec, _ = make(history=4, queue=100)
    assert not rec.payload_ring.ring
    for _ in range(3):
        rec.finish(rec.begin("P", "Predict", ("P",), "m"), prompt_tokens=1, keep=True)
    rec.fold()
    slots = {id(slot) for slot in rec.payload_ring.ring}
    assert len(slots) == 3
    for _ in range(20):
        rec.finish(rec.begin("P", "Predict", ("P",), "m"), prompt_tokens=1, keep=True)
    rec.fold()
    assert (
        len(rec.payload_ring.ring) == 4 and len({id(slot) for slot in rec.payload_ring.ring} | slots) == 4
    )  # one more, then reused


def test_snapshot_sequence_marks_what_it_covers():
    rec, _ = make(queue=100)
    rec.finish(rec.begin("P", "Predict", ("P",), "m"))
    snapshot = rec.snapshot()
    rec.finish(rec.begin("P", "Predict", ("P",), "m"))
    events = drained(rec)
    assert [e["seq"] > snapshot["seq"] for e in events] == [False, True]


def test_scopes_count_their_own_calls_even_after_they_end():
    rec, clock = make(queue=100)
    rec.scope_start("compile", "compile-1", {"class": "MIPROv2"})
    rec.scope_start("eval", "eval-1", {"total": 2, "parent": "compile-1"})
    inside = rec.begin("P", "Predict", ("P",), "m", scopes=("compile-1", "eval-1"))
    rec.eval_progress("eval-1", 1, 1.0)
    rec.scope_end("eval-1", {"score": 50.0})
    # A straggler from a resubmitted example lands after its evaluation ended.
    rec.finish(inside, prompt_tokens=7, completion_tokens=3, cost=0.1)
    rec.scope_end("compile-1", {})
    outside = rec.begin("P", "Predict", ("P",), "m")
    rec.finish(outside, prompt_tokens=1, cost=0.1)
    snapshot = rec.snapshot()
    scopes = {s["id"]: s for s in snapshot["stats"]["scopes"]}
    assert scopes["eval-1"]["state"] == "done" and scopes["eval-1"]["score"] == 50.0
    assert scopes["eval-1"]["usage"]["prompt_tokens"] == 7
    assert scopes["compile-1"]["usage"]["calls"] == 1
    assert rec.stats()["scopes"] == []  # only running scopes ride in every stats frame
    kinds = [e["t"] for e in drained(rec)]
    # The progress made before the end rides in eval_end (done: 1), not in an event of its own.
    assert kinds == ["compile_start", "eval_start", "eval_end", "call", "compile_end", "call"]
    assert scopes["eval-1"]["done"] == 1


def test_evaluation_progress_goes_out_once_per_drain_with_the_latest_value():
    rec, _ = make(queue=100)
    rec.scope_start("eval", "eval-1", {"total": 100})
    rec.drain()
    for done in range(1, 51):
        rec.eval_progress("eval-1", done, done * 0.5)
    assert rec.stats()["scopes"][0]["done"] == 50  # exact whenever read
    assert [(e["t"], e["done"], e["score_sum"]) for e in drained(rec)] == [("eval_progress", 50, 25.0)]
    assert drained(rec) == []  # nothing new, nothing sent
    rec.eval_progress("eval-1", 51, 25.5)
    assert [e["done"] for e in drained(rec)] == [51]


def test_reset_forgets_everything():
    rec, _ = make()
    rec.finish(rec.begin("P", "Predict", ("P",), "m"), prompt_tokens=3)
    rec.reset()
    assert rec.stats()["totals"]["calls"] == 0 and rec.snapshot()["calls"] == []


def test_hot_path_folds_in_batches_and_every_reader_folds_first():
    from dspy_top.instrumentation.recorder import FOLD_BATCH

    rec, _ = make(queue=10_000)
    calls = FOLD_BATCH - 1  # one short of a batch
    for _ in range(calls):
        rec.finish(rec.begin("P", "Predict", ("P",), "m"), prompt_tokens=2, cost=0.25)
    assert len(rec.pending) == calls and not rec.cells  # nothing folded on the way
    rec.begin("P", "Predict", ("P",), "m")  # in flight
    assert rec.stats()["totals"]["calls"] == calls and not rec.pending  # a reader folds first
    assert rec.stats()["totals"]["in_flight"] == 1
    for _ in range(calls):
        rec.finish(rec.begin("P", "Predict", ("P",), "m"), prompt_tokens=2, cost=0.25)
    assert len(rec.pending) == calls
    rec.finish(rec.begin("P", "Predict", ("P",), "m"), prompt_tokens=2, cost=0.25)
    assert not rec.pending and rec.cells[("P", "m")].calls == 2 * calls + 1  # a full batch: the job folded it
    assert rec.snapshot()["stats"]["totals"]["prompt_tokens"] == 2 * (2 * calls + 1)
    assert len(drained(rec)) == 2 * calls + 1


def test_hot_path_waits_for_the_lock_only_past_its_backlog_bound():
    from dspy_top.instrumentation.recorder import PENDING_LIMIT

    rec, _ = make(queue=10)
    done = threading.Event()

    def job(calls=PENDING_LIMIT):  # one pending record a call: up to the bound, not past it
        for _ in range(calls):
            rec.finish(rec.begin("P", "Predict", ("P",), "m"), prompt_tokens=2, completion_tokens=1, cost=0.25)
        done.set()

    with rec.lock:  # a reader (the server thread, the guard) busy folding
        worker = threading.Thread(target=job)
        worker.start()
        assert done.wait(10), "the hot path waited for the recorder's lock"
    worker.join()
    totals = rec.stats()["totals"]
    calls = PENDING_LIMIT
    assert (totals["calls"], totals["prompt_tokens"], totals["cost_usd"]) == (calls, 2 * calls, 0.25 * calls)

    # Past the bound the backlog is folded even if that means waiting for the reader.
    done.clear()
    with rec.lock:
        worker = threading.Thread(target=job, args=(PENDING_LIMIT + 1,))
        worker.start()
        deadline = time.monotonic() + 60  # however loaded the machine, it gets to the bound
        while len(rec.pending) <= PENDING_LIMIT and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not done.wait(0.2)  # and stops there, waiting for the lock
        assert len(rec.pending) == PENDING_LIMIT + 1
    assert done.wait(10)
    worker.join()
    totals = rec.stats()["totals"]
    calls += PENDING_LIMIT + 1
    assert (totals["calls"], totals["prompt_tokens"], totals["cost_usd"]) == (calls, 2 * calls, 0.25 * calls)


def test_threads_and_a_reader_racing_stay_exact_and_the_backlog_bounded():
    from dspy_top.instrumentation.recorder import PENDING_LIMIT

    rec, _ = make(queue=100)
    threads, calls = 8, 3000
    stop = threading.Event()
    seen, backlog = [], []

    def job(n):
        for i in range(calls):
            record = rec.begin(f"M{n % 3}", "Predict", ("M",), "m")
            rec.finish(record, prompt_tokens=i % 7, completion_tokens=1, cost=0.5)
            backlog.append(len(rec.pending))

    def reader():
        while not stop.is_set():
            totals = rec.stats()["totals"]
            seen.append((totals["calls"], totals["in_flight"]))

    watcher = threading.Thread(target=reader)
    watcher.start()
    workers = [threading.Thread(target=job, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    stop.set()
    watcher.join()

    stats = rec.stats()
    totals = stats["totals"]
    assert totals["calls"] == threads * calls and totals["in_flight"] == 0
    assert totals["prompt_tokens"] == threads * sum(i % 7 for i in range(calls))
    assert totals["cost_usd"] == 0.5 * threads * calls
    assert sum(m["calls"] for m in stats["modules"]) == threads * calls
    assert [c for c, _ in seen] == sorted(c for c, _ in seen)  # never goes backwards
    assert all(0 <= f <= threads for _, f in seen)
    assert max(backlog) <= PENDING_LIMIT + 2 * threads and not rec.pending


def test_calls_begun_with_modules_are_named_when_folded_or_read():
    rec, _ = make(queue=100)
    named = []

    def describe(modules):
        named.append(tuple(modules))
        if modules == ["broken"]:
            raise RuntimeError("cannot name")
        return ".".join(modules), modules[-1], tuple(modules)

    rec.describe = describe
    running = rec.begin(None, None, (), "m", modules=["RAG", "answer"])
    done = rec.begin(None, None, (), "m", modules=["RAG", "retrieve"])
    rec.finish(done, prompt_tokens=5)
    assert named == []  # nothing named on the job's thread
    stats = rec.stats()
    modules = {m["path"]: m for m in stats["modules"]}
    assert modules["RAG.answer"]["in_flight"] == 1 and modules["RAG.answer"]["class"] == "answer"
    assert modules["RAG.retrieve"]["calls"] == 1 and modules["RAG.retrieve"]["chain"] == ["RAG", "retrieve"]
    rec.finish(running)
    rec.stats()
    assert sorted(named) == [("RAG", "answer"), ("RAG", "retrieve")]  # each call named once
    assert [c["path"] for c in rec.snapshot()["calls"]] == ["RAG.retrieve", "RAG.answer"]

    rec.finish(rec.begin(None, None, (), "m", modules=["broken"]))
    stats = rec.stats()
    assert "(unknown)" in {m["path"] for m in stats["modules"]} and stats["internal_errors"] == 1
