"""The live viewer (`TopApp`) run headless by Pilot over the local sockets of a runtime directory."""

from __future__ import annotations

import asyncio

from dspy_top.model import Fleet
from dspy_top.sources.collector import Collector
from dspy_top.sources.local import local_sockets
from dspy_top.viewer.app import TopApp


def run_app(directory, script, size=(120, 40), **options):
    """Run `script(app, pilot)` in the app watching `directory` (rescanned every 0.2 s); `options` go to TopApp."""

    async def main():
        fleet = Fleet()
        collector = Collector(fleet, [local_sockets(directory=directory, rescan_every=0.2)])
        app = TopApp(fleet, collector, delay=0.2, **options)
        async with app.run_test(size=size) as pilot:
            await script(app, pilot)

    asyncio.run(main())
