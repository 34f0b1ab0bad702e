"""A collector under test: started over some sources, its payload answers and notices kept."""

from __future__ import annotations

from dspy_top.model import Fleet
from dspy_top.sources.base import Source
from dspy_top.sources.collector import Collector


class Running:
    """A collector over `sources` (into `fleet`, or a new one), started on entering; its answers and notices kept."""

    def __init__(self, *sources: Source, fleet: Fleet | None = None, **options) -> None:
        self.fleet = fleet if fleet is not None else Fleet()
        self.answers: list = []
        self.notices: list[str] = []
        self.collector = Collector(self.fleet, list(sources), on_payload=self.answers.append, **options)
        self.collector.on_notice = self.notices.append

    def __enter__(self):
        self.collector.start()
        return self

    def __exit__(self, *exc) -> None:
        self.collector.stop()
