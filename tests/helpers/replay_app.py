"""The replay's app under Pilot: built as `dspy-top replay` builds it, run with a script, its bar read."""

from __future__ import annotations

import asyncio

from dspy_top.model import Fleet
from dspy_top.recording import Recording
from dspy_top.sources.collector import Collector
from dspy_top.sources.replay import RecordingSource
from dspy_top.viewer.replay.app import ReplayApp
from dspy_top.viewer.replay.bar import ReplayBar
from tests.helpers.waiting import pilot_wait


def replay_app(path, at: float | None = None, delay: float = 3600) -> ReplayApp:
    """The app as `dspy-top replay` builds it: the collector started, the first position told."""
    source = RecordingSource([Recording(path)])
    if at is not None:
        source.seek(source.timeline.start + at * (source.timeline.end - source.timeline.start))
    fleet = Fleet(source.clock.now)
    collector = Collector(fleet, [source]).start()
    assert source.wait_reached(source.clock.position(), 10)
    return ReplayApp(fleet, collector, source, delay=delay, start_collector=False)


def run(app: ReplayApp, script, size=(120, 40)) -> None:
    async def main():
        async with app.run_test(size=size) as pilot:
            await pilot_wait(pilot, lambda: app.query(ReplayBar) and bar(app), "the replay bar")
            await settled(pilot)  # the start position on screen
            await script(pilot)

    asyncio.run(main())


async def settled(pilot) -> None:
    """Until the seek the keys asked for is on screen."""
    app = pilot.app
    await pilot.pause()
    await pilot_wait(pilot, lambda: app._seek_started is None and app.replay.caught_up(), "the seek")
    await pilot_wait(pilot, lambda: "SEEKING" not in bar(app), "the bar drawn after the seek")


def bar(app) -> str:
    return app.query_one(ReplayBar)._drawn
