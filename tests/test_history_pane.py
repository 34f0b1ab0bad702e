"""The history pane holds every call the viewer holds (issue 16): it scrolls through all of them, paused
scrolling stays still while calls arrive (its title counts them), End and `f` follow again, enter
opens the call under the cursor, and `/` finds words in prompts and responses (issue 18)."""

from __future__ import annotations

import asyncio

import pytest

from dspy_top.model import Fleet
from dspy_top.viewer.app import TopApp
from dspy_top.viewer.components.history_table import HistoryTable
from dspy_top.viewer.screens.inspect import InspectScreen
from tests.helpers.jobs import runtime_dir, start_job
from tests.helpers.model_messages import Clock, attach, call, counters, stats
from tests.helpers.scripted import RUNTIME_DIR, ScriptedCollector


def fleet_with_calls(count: int, capacity: int = 10_000) -> tuple[Fleet, Clock]:
    clock = Clock(10_000.0)
    fleet = Fleet(clock, history_capacity=capacity)
    attach(fleet, "a", 7, stats(counters(calls=count)), calls=[call(i, start=5_000.0 + i) for i in range(count)])
    return fleet, clock


def more_calls(fleet: Fleet, first: int, count: int) -> None:
    with fleet.lock:
        for i in range(first, first + count):
            fleet.fold("a", call(i, start=5_000.0 + i))
        fleet.fold("a", stats(counters(calls=first + count)))


def run(fleet, script, size=(120, 40)):
    async def main():
        app = TopApp(fleet, ScriptedCollector(fleet), delay=0.05, watching=str(RUNTIME_DIR))
        async with app.run_test(size=size) as pilot:
            await pilot.pause(0.1)
            await script(app, pilot, app.screen.query_one(HistoryTable))

    asyncio.run(main())


def top_row(history: HistoryTable) -> int:
    return history.calls[int(history.scroll_y)].id


@pytest.mark.slow
def test_every_call_held_is_in_the_pane_and_home_end_reach_both_ends():
    fleet, _ = fleet_with_calls(1_500)

    async def script(app, pilot, history):
        assert history.row_count == 1_500 and history.follow
        assert history.call_at_cursor().id == 1_499 and history.scroll_y == history.max_scroll_y
        history.focus()
        await pilot.press("home")
        assert not history.follow and history.call_at_cursor().id == 0 and history.scroll_y == 0
        assert "paused scrolling" in str(history.border_title)
        # End on an idle job: following, at the newest call, scrolled to the bottom (never at the oldest rows).
        await pilot.press("end")
        await pilot.pause(0.1)
        assert history.follow and history.call_at_cursor().id == 1_499
        assert history.scroll_y == history.max_scroll_y
        await pilot.press("home", "f")
        await pilot.pause(0.1)
        assert history.follow and history.call_at_cursor().id == 1_499 and history.scroll_y == history.max_scroll_y

    run(fleet, script)


@pytest.mark.slow
def test_paused_scrolling_stays_still_while_calls_arrive_and_counts_them():
    fleet, _ = fleet_with_calls(300, capacity=400)

    async def script(app, pilot, history):
        history.focus()
        await pilot.press("pageup", "up", "up")
        cursor, top = history.call_at_cursor().id, top_row(history)
        assert not history.follow
        for batch in range(3):
            more_calls(fleet, 300 + 100 * batch, 100)  # past the capacity: the oldest calls go
            await pilot.pause(0.2)
            assert history.call_at_cursor().id == cursor and top_row(history) == top
            assert f"{100 * (batch + 1):,} new below" in str(history.border_title)
        assert history.row_count == 400 and history.calls[0].id == 200
        await pilot.press("end")
        await pilot.pause(0.1)
        assert history.follow and history.call_at_cursor().id == 599
        assert "following" in str(history.border_title)

    run(fleet, script)


@pytest.mark.slow
def test_enter_opens_the_call_under_the_cursor_even_as_new_calls_arrive():
    fleet, _ = fleet_with_calls(50)

    async def script(app, pilot, history):
        history.focus()
        await pilot.press("up", "up")
        chosen = history.call_at_cursor()
        more_calls(fleet, 50, 30)
        await pilot.pause(0.2)
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert isinstance(app.screen, InspectScreen) and app.screen.call.key == chosen.key

    run(fleet, script)


def test_the_history_size_is_configurable():
    fleet, _ = fleet_with_calls(120, capacity=100)

    async def script(app, pilot, history):
        assert history.row_count == 100 and history.calls[0].id == 20
        assert "100 calls" in str(history.border_title)

    run(fleet, script)


@pytest.mark.slow
def test_slash_finds_words_inside_prompts_and_responses():
    directory = runtime_dir()
    job = start_job(directory)
    try:
        truth = job.run(10)  # questions "What is 0 + 2?" ... "What is 9 + 2?", two calls each

        async def main():
            from dspy_top.sources.collector import Collector
            from dspy_top.sources.local import local_sockets

            fleet = Fleet()
            app = TopApp(fleet, Collector(fleet, [local_sockets(directory=directory, rescan_every=0.2)]), delay=0.2)
            async with app.run_test(size=(120, 40)) as pilot:
                history = app.screen.query_one(HistoryTable)
                deadline = asyncio.get_running_loop().time() + 20
                while history.row_count < truth["totals"]["calls"]:
                    assert asyncio.get_running_loop().time() < deadline, "the job's calls"
                    await pilot.pause(0.05)
                await pilot.press("slash", *"is 7 + 2?", "enter")
                while not (history.row_count == 2 and "searched" in str(history.border_title)):
                    assert asyncio.get_running_loop().time() < deadline, str(history.border_title)
                    await pilot.pause(0.05)
                assert {c.path for c in history.calls} == {"RAG.generate_query.predict", "RAG.answer"}
                assert all("what is 7 + 2?" in app.fleet.payload_texts[c.key] for c in history.calls)

        asyncio.run(main())
    finally:
        job.kill()


@pytest.mark.slow
def test_a_call_the_screen_showed_opens_after_its_process_ended():
    """`dspy-top demo` and `run` never lose what they showed (issue 16): the payloads of the rows on
    screen are kept by the viewer while the process runs, so they open once it has ended; a row that
    was never on screen (scrolled past) while the process kept its payload is said to be gone."""
    directory = runtime_dir()
    job = start_job(directory, history=8)  # the process keeps the payloads of its newest 8 calls only
    try:

        async def main():
            from dspy_top.sources.collector import Collector
            from dspy_top.sources.local import local_sockets

            fleet = Fleet()
            app = TopApp(fleet, Collector(fleet, [local_sockets(directory=directory, rescan_every=0.2)]), delay=0.2)
            async with app.run_test(size=(120, 16)) as pilot:  # a history pane of a few rows
                history = app.screen.query_one(HistoryTable)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + 30
                while not (app.snapshot and app.snapshot.processes and app.snapshot.processes[0].state == "running"):
                    assert loop.time() < deadline, "the attach"
                    await pilot.pause(0.05)
                truth = await asyncio.to_thread(job.run, 10)  # 20 calls: most scroll past unseen
                calls = truth["totals"]["calls"]
                while not (
                    history.row_count == calls and all(c.key in app.shown_payloads for c in history.calls_in_view())
                ):
                    assert loop.time() < deadline, "the shown rows' payloads"
                    await pilot.pause(0.05)
                shown = history.calls_in_view()
                assert 0 < len(shown) < calls
                await asyncio.to_thread(job.exit)
                while app.snapshot.processes[0].state != "ended":
                    assert loop.time() < deadline, "the process's end"
                    await pilot.pause(0.05)
                history.focus()
                await pilot.press("end", "enter")  # the newest call, shown while the process ran
                screen = app.screen
                assert isinstance(screen, InspectScreen) and screen.call.key == shown[-1].key
                while screen.answer is None:
                    assert loop.time() < deadline, "the kept payload"
                    await pilot.pause(0.05)
                assert screen.answer.payload is not None and not screen.has_class("-gone")
                assert "[[ ## answer ## ]]" in str(screen.query_one("#inspect-text").render())
                await pilot.press("escape", "home", "enter")  # the oldest: never on screen while kept
                screen = app.screen
                while screen.answer is None:
                    assert loop.time() < deadline, "the answer for a call never shown"
                    await pilot.pause(0.05)
                assert screen.answer.payload is None and screen.has_class("-gone")

        asyncio.run(main())
    finally:
        job.kill()


def test_kept_payloads_are_bounded_and_a_shown_call_is_asked_for_once():
    from dspy_top.model.payloads import PayloadAnswer
    from dspy_top.viewer.shown_payloads import IN_FLIGHT, ShownPayloads

    fleet, _ = fleet_with_calls(100)
    calls = fleet.snapshot(history_limit=100).calls
    kept = ShownPayloads(budget=10_000)
    first = kept.wanted(calls, {"a": 1000})
    assert len(first) == IN_FLIGHT and kept.wanted(calls[:IN_FLIGHT], {"a": 1000}) == []  # asked once
    assert kept.wanted(calls, {}) == []  # a process that ended (or keeps nothing) is not asked
    for process, call_id in first:
        kept.add(PayloadAnswer(process, call_id, {"messages": [{"role": "user", "content": "x" * 1_000}]}))
    held = [key for key in first if key in kept]
    assert 0 < len(held) < len(first) and held == first[-len(held) :]  # within 10,000 characters, newest kept
    kept.add(PayloadAnswer("a", 99, None, "the process no longer has it"))
    assert ("a", 99) not in [key for key in kept.wanted(calls, {"a": 1000})]  # gone: never asked again


def test_a_payload_answer_that_comes_as_the_viewer_quits_is_harmless():
    """The viewer asks for shown calls' payloads all the time: an answer may arrive after its screens went."""
    from dspy_top.model.payloads import PayloadAnswer
    from dspy_top.viewer.messages import PayloadArrived

    fleet, _ = fleet_with_calls(5)
    app = TopApp(fleet, ScriptedCollector(fleet), delay=0.05, watching=str(RUNTIME_DIR))

    async def main():
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(0.1)
        app.on_payload_arrived(PayloadArrived(PayloadAnswer("a", 4, {"messages": []})))  # no screen left

    asyncio.run(main())
    assert ("a", 4) in app.shown_payloads
