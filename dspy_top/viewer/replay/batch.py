"""`dspy-top replay -b`: the snapshots live batch mode would have printed, from a recording.

A snapshot every `-d` seconds of the recording's time, ending with the end state (or the
`--at` moment); `-n N` prints the last N of them, so `-n 1` is the end state alone. They
are printed as fast as the file reads, as text frames or JSON lines exactly as `dspy-top -b`
prints them (viewer/batch.py, docs/batch-json.md), their times being the recording's. A
recording still being written is then followed, a snapshot every `-d` seconds, until its
writer stops. No Textual here.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from typing import TextIO

from dspy_top.model import Fleet
from dspy_top.pricing import Price
from dspy_top.sources.collector import Collector
from dspy_top.sources.replay import RecordingSource
from dspy_top.viewer.batch import Printer, say

STEP_TIMEOUT = 120.0  # seconds one snapshot's stretch of the recording may take to read


def moments(start: float, end: float, delay: float, iterations: int | None) -> list[float]:
    """Every `delay` seconds back from `end` to `start`, oldest first (the last `iterations` of them)."""
    out = []
    at = end
    while at >= start and (iterations is None or len(out) < iterations):
        out.append(at)
        at = end - len(out) * delay
    return out[::-1] or [end]


def run(
    source: RecordingSource,
    *,
    iterations: int | None = None,
    delay: float = 1.0,
    as_json: bool = False,
    end: float | None = None,
    out: TextIO | None = None,
    prices: dict[str, Price] | None = None,
    budget_usd: float | None = None,
) -> int:
    """Print the snapshots of `source` up to `end` (default: the recording's end); the exit status."""
    fleet = Fleet(source.clock.now, prices=prices, budget_usd=budget_usd, history_capacity=source.history)
    collector = Collector(fleet, [source]).start()
    # A snapshot that would only repeat the last one once no process runs is left out (a followed
    # recording's end state, reached by its last step already).
    printer = Printer(out or sys.stdout, as_json, repeats=False)
    follow = end is None and iterations is None and source.live  # being written when it was opened
    try:
        for moment in _moments(source, end, delay, iterations, follow):
            source.seek(moment)
            if not source.wait_reached(moment, STEP_TIMEOUT):
                when = "its end" if moment == math.inf else time.strftime("%H:%M:%S", time.localtime(moment))
                say(f"reading the recording up to {when} took over {STEP_TIMEOUT:g} s: stopped there")
                break
            printer.print(fleet)
    except (KeyboardInterrupt, BrokenPipeError):
        pass
    finally:
        collector.stop()
    return printer.status()


def _moments(
    source: RecordingSource, end: float | None, delay: float, iterations: int | None, follow: bool
) -> Iterator[float]:
    timeline = source.timeline
    last = timeline.end if end is None else end
    yield from moments(timeline.start, last, delay, iterations)
    # A recording still being written: go on with it as live batch mode would, until it stops;
    # then its end state, all of it (math.inf: everything the file holds).
    if follow:
        while source.live:
            time.sleep(delay)
            last += delay
            yield min(last, source.clock.playback().end)
        yield math.inf
