"""Replays under test: a RecordingSource under the real collector and fleet, and the oracle a replay's numbers are
checked against (the totals the job itself had sent by a moment)."""

from __future__ import annotations

import pytest

from dspy_top.model import Fleet
from dspy_top.recording import Recording
from dspy_top.sources.replay import RecordingSource
from tests.helpers.collecting import Running


class Replaying(Running):
    """A RecordingSource over `paths` under a started collector; its payload answers and notices kept."""

    def __init__(self, *paths, **options) -> None:
        self.source = RecordingSource([Recording(path) for path in paths], **options)
        super().__init__(self.source, fleet=Fleet(self.source.clock.now))

    def at(self, moment: float):
        """The fleet's snapshot once the source has told everything up to `moment`."""
        self.source.seek(moment)
        assert self.source.wait_reached(moment, 20), f"the replay never reached {moment}"
        with self.fleet.lock:
            return self.fleet.snapshot(history_limit=100_000)


def stats_at(messages: list[dict], moment: float) -> dict:
    """The oracle: the totals of the last `stats` (or snapshot, or exit) the job sent at or before `moment`:
    what a live viewer showed then."""
    found = [
        m for m in messages if m["t"] in ("stats", "snapshot", "exit") and (m.get("at") or m["stats"]["at"]) <= moment
    ]
    if not found:  # before the job's first numbers: nothing yet
        return {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0, "cache_hits": 0, "cost_usd": 0.0}
    last = found[-1]
    return last["totals"] if last["t"] == "stats" else last["stats"]["totals"]  # a snapshot's, or the exit's


def same_totals(totals, expected: dict) -> None:
    assert (totals.calls, totals.prompt_tokens, totals.completion_tokens, totals.cache_hits) == (
        expected["calls"],
        expected["prompt_tokens"],
        expected["completion_tokens"],
        expected["cache_hits"],
    )
    assert totals.cost_usd == pytest.approx(expected["cost_usd"], abs=1e-12)
