"""The `Source` interface (dspy_top/sources/base.py) and the real `Collector`, with in-memory sources.

No socket here: these say what every source may count on, whatever it reads (a local socket,
a recording, a relay): its processes are folded and shown, requests reach the source that
reported the process, a source's fault stops neither the collector nor the other sources,
and the viewer and batch mode work the same whatever source they are given.
"""

from __future__ import annotations

import io
import json
import time

import pytest

from dspy_top.model import Fleet
from dspy_top.sources.base import Source
from dspy_top.sources.collector import Collector
from dspy_top.viewer import batch
from tests.helpers.collecting import Running
from tests.helpers.fake_server import snapshot, stats
from tests.helpers.memory_source import MemorySource
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

PAYLOAD = {"model": "openai/fake", "messages": [{"role": "user", "content": "hi"}]}


def call(call_id: int, path: str = "Fake.predict") -> dict:
    return {
        "t": "call",
        "id": call_id,
        "seq": call_id,
        "start": time.time() - 1,
        "latency": 0.5,
        "path": path,
        "module_class": "Predict",
        "model": "openai/fake",
        "response_model": None,
        "prompt_tokens": 100,
        "completion_tokens": 10,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "cost_usd": 0.001,
        "cost_saved_usd": None,
        "cache_hit": False,
        "retries": 0,
        "error": None,
        "error_message": None,
        "scopes": [],
        "stream": False,
    }


def exit_message(calls: int) -> dict:
    return {"t": "exit", "at": time.time(), "stats": stats(calls), "returncode": 0}


def rows(fleet: Fleet) -> dict:
    with fleet.lock:
        return {row.key: row for row in fleet.snapshot().processes}


def test_a_source_s_processes_are_folded_and_end_with_their_final_numbers():
    source = MemorySource(where="a recording")
    with Running(source) as running:
        assert running.collector.where == "a recording"
        source.hello("job", 4242)
        source.send("job", snapshot(2), call(1), call(2))
        row = wait_until(lambda: rows(running.fleet).get("job"), what="the process's row")
        assert row.pid == 4242
        wait_until(lambda: rows(running.fleet)["job"].totals.calls == 2, what="its snapshot")
        assert running.collector.wait_settled(5)
        source.send("job", exit_message(3))
        source.end("job")
        ended = wait_until(
            lambda: rows(running.fleet)["job"].state == "ended" and rows(running.fleet)["job"], what="its end"
        )
        assert ended.totals.calls == 3 and ended.final_numbers == "received"
    assert source.closed  # the collector closes its sources when it stops


def test_a_stream_that_breaks_before_its_exit_is_lost_with_its_last_numbers():
    source = MemorySource()
    with Running(source) as running:
        source.hello("job", 4242)
        source.send("job", snapshot(5))
        source.end("job", "the process closed the connection")
        lost = wait_until(
            lambda: (
                rows(running.fleet).get("job")
                if rows(running.fleet).get("job") and rows(running.fleet)["job"].state == "lost"
                else None
            ),
            what="the lost row",
        )
        assert lost.totals.calls == 5 and lost.final_numbers == "not received"
        assert "closed the connection" in lost.status


def test_requests_go_to_the_source_that_reported_the_process():
    first = MemorySource(payloads={("a", 1): PAYLOAD})
    second = MemorySource(stops="a recording cannot stop anything")
    with Running(first, second) as running:
        first.hello("a", 1)
        second.hello("b", 2)
        first.send("a", snapshot(1), call(1))
        second.send("b", snapshot(1), call(1))
        wait_until(lambda: {"a", "b"} <= set(rows(running.fleet)), what="both rows")
        running.collector.request_payload("a", 1)
        running.collector.request_payload("b", 1)
        running.collector.request_stop("a", "from the test")
        running.collector.request_stop("b", "from the test")
        wait_until(lambda: len(running.answers) == 2 and running.notices, what="both answers and the notice")
        answers = {answer.process: answer for answer in running.answers}
        assert answers["a"].payload == PAYLOAD and answers["a"].call_id == 1
        assert answers["b"].payload is None and "no longer holds this call" in answers["b"].reason
        assert first.asked == [("a", 1)] and second.asked == [("b", 1)]
        assert first.stops == [("a", "from the test")] and second.stops == []
        assert running.notices == ["cannot ask the process to stop: a recording cannot stop anything"]


@pytest.mark.slow
def test_a_payload_request_is_answered_even_when_no_answer_comes():
    source = MemorySource()
    with Running(source, payload_timeout=0.3) as running:
        source.hello("job", 1)
        source.send("job", snapshot(1))
        wait_until(lambda: rows(running.fleet).get("job"), what="the row")
        source.silent = True
        running.collector.request_payload("job", 7)
        (answer,) = wait_until(lambda: list(running.answers), what="the expired request's answer")
        assert answer.payload is None and "no answer from the process within 0.3s" in answer.reason
        source.silent = False
        running.collector.request_payload("nobody", 3)  # a key no source reported
        wait_until(lambda: len(running.answers) == 2, what="the unknown process's answer")
        assert "payloads are gone" in running.answers[1].reason
        source.silent = True
        running.collector.request_payload("job", 8)
        wait_until(lambda: source.asked[-1:] == [("job", 8)], what="the request to reach the source")
        source.end("job", "the process closed the connection")
        wait_until(lambda: len(running.answers) == 3, what="the pending request's answer")
        assert "connection closed (the process closed the connection)" in running.answers[2].reason


def test_a_refused_message_marks_its_process_and_nothing_more_is_read_from_it():
    source = MemorySource()
    with Running(source) as running:
        source.hello("bad", 1)
        source.hello("good", 2)
        source.send("bad", snapshot(1), {"t": "calls", "fields": "nonsense"}, snapshot(9))
        source.send("good", snapshot(3))
        wait_until(lambda: "bad" in source.refused, what="the refusal")
        source.send("bad", snapshot(50))
        wait_until(
            lambda: rows(running.fleet).get("good") and rows(running.fleet)["good"].totals.calls == 3,
            what="the good process",
        )
        bad = rows(running.fleet)["bad"]
        assert bad.state == "lost" and "malformed 'calls'" in bad.status
        assert bad.totals.calls == 1  # what came before the refused message, nothing after it


@pytest.mark.slow
def test_a_source_that_raises_stops_neither_the_collector_nor_the_other_sources():
    class Broken(Source):
        where = "nowhere"
        turns = 0

        def turn(self, ready, now) -> None:
            Broken.turns += 1
            raise RuntimeError("the relay fell over")

    healthy = MemorySource()
    with Running(Broken(), healthy) as running:
        healthy.hello("job", 1)
        healthy.send("job", snapshot(4))
        wait_until(
            lambda: rows(running.fleet).get("job") and rows(running.fleet)["job"].totals.calls == 4,
            what="the healthy source's process",
        )
        wait_until(lambda: running.collector.faults >= 2, what="the faults to be counted")
        assert running.collector.alive
        assert "RuntimeError: the relay fell over" in running.notices[0]
        assert Broken.turns >= 2  # it keeps being asked: a fault may pass


def test_a_key_said_hello_again_after_its_end_keeps_the_ended_process_apart():
    source = MemorySource()
    with Running(source) as running:
        source.hello("sock", 100)
        source.send("sock", snapshot(2), call(1), exit_message(2))
        source.end("sock")
        wait_until(
            lambda: rows(running.fleet).get("sock") and rows(running.fleet)["sock"].state == "ended",
            what="the first process's end",
        )
        source.hello("sock", 200)  # a new process reusing the pid, and so the key
        # Its call, then the stats frame that counts it (a call shows in the history once counted).
        source.send("sock", snapshot(7), call(1), stats(8))
        wait_until(
            lambda: len(rows(running.fleet)) == 2 and rows(running.fleet)["sock"].totals.calls == 8,
            what="the new process",
        )
        old_key, old = next((k, r) for k, r in rows(running.fleet).items() if k != "sock")
        assert old_key.startswith("sock#") and old.pid == 100 and old.state == "ended" and old.totals.calls == 2
        with running.fleet.lock:
            calls = running.fleet.snapshot(history_limit=10).calls
        assert {(c.process, c.pid) for c in calls} == {(old_key, 100), ("sock", 200)}


def test_dismissing_a_row_tells_its_source_and_let_go_spares_a_process_that_spoke():
    source = MemorySource()
    answers: list[bool] = []
    with Running(source) as running:
        source.hello("spoke", 1)
        source.send("spoke", snapshot(1))
        source.tell(lambda sink: sink.attach("wrapper", 2))
        wait_until(
            lambda: (
                rows(running.fleet).get("spoke")
                and rows(running.fleet)["spoke"].totals.calls == 1
                and "wrapper" in rows(running.fleet)
            ),
            what="both rows",
        )
        source.tell(lambda sink: answers.extend([sink.let_go("wrapper"), sink.let_go("spoke")]))
        wait_until(lambda: len(answers) == 2, what="the let-go answers")
        assert answers == [True, False]
        assert set(rows(running.fleet)) == {"spoke"}
        assert not running.collector.dismiss("spoke")  # live: it stays
        source.end("spoke")
        wait_until(lambda: rows(running.fleet)["spoke"].state == "lost", what="its end")
        assert running.collector.dismiss("spoke")
        wait_until(lambda: source.forgotten == ["spoke"], what="the source to hear of it")
        assert rows(running.fleet) == {}


def test_a_status_said_while_waiting_shows_on_the_connecting_row():
    source = MemorySource()
    with Running(source) as running:
        source.tell(lambda sink: sink.attach("named", 9, "waiting for pid 9 to serve dspy-top"))
        row = wait_until(lambda: rows(running.fleet).get("named"), what="the waiting row")
        assert row.state == "connecting" and row.status == "waiting for pid 9 to serve dspy-top"
        assert not running.collector.settled()  # a process on its way in
        source.tell(lambda sink: sink.closed("named", "no process 9"))
        wait_until(lambda: rows(running.fleet)["named"].state == "failed", what="the failure")
        assert running.collector.wait_settled(5)


def test_batch_mode_prints_whatever_source_it_is_given(capsys):
    source = MemorySource(where="a test")
    source.hello("job", 4242)
    source.send("job", snapshot(3), call(1))
    out = io.StringIO()
    assert batch.run([source], iterations=1, as_json=True, out=out) == 0
    (process,) = json.loads(out.getvalue())["processes"]
    assert process["pid"] == 4242 and process["calls"] == 3 and process["socket"] == "job"
    assert batch.run([MemorySource(where="an empty test")], iterations=1, out=io.StringIO()) == 1
    assert "no instrumented DSPy process found in an empty test;" in capsys.readouterr().err


@pytest.mark.slow
def test_the_viewer_shows_whatever_source_it_is_given():
    import asyncio

    from dspy_top.viewer.app import TopApp
    from dspy_top.viewer.components.process_table import ProcessTable

    source = MemorySource(where="an in-memory source", payloads={("job", 1): PAYLOAD})

    async def main():
        fleet = Fleet()
        app = TopApp(fleet, Collector(fleet, [source]), delay=0.1)
        async with app.run_test(size=(120, 40)) as pilot:
            assert "an in-memory source" in str(app.screen.query_one("#empty").render())
            source.hello("job", 4242)
            source.send("job", snapshot(3), call(1))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not (app.snapshot and app.snapshot.totals.calls == 3):
                await pilot.pause(0.05)
            assert app.snapshot.totals.calls == 3
            await pilot.pause(0.2)
            assert list(app.screen.query_one(ProcessTable).keys) == ["job"]
        assert source.closed

    asyncio.run(main())
