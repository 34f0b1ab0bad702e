"""A real DSPy job recording into its file (DSPY_TOP_RECORD), killed with SIGKILL right after calls
the file's last stored `stats` does not cover: its replay's final state, in batch mode and in the
Textual app, equals the recording's exact totals (`RecordingState.totals()`: the latest stats plus
the calls stored after it), which equal what the simulated LM served.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys

import pytest

from dspy_top.model import Fleet
from dspy_top.recording import Recording
from dspy_top.simlm import SimLM
from dspy_top.sources.collector import Collector
from dspy_top.sources.replay import RecordingSource
from dspy_top.viewer.replay.app import ReplayApp
from dspy_top.viewer.replay.bar import ReplayBar
from tests.helpers.recorded import REPO, RecordJob
from tests.helpers.screen import screen_text
from tests.helpers.waiting import wait_until

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

COUNTED = ("calls", "prompt_tokens", "completion_tokens", "cache_hits", "errors")


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """(the recording, its exact totals, the latest stored stats' totals, what the LM served)."""
    tmp = tmp_path_factory.mktemp("killed")
    path = tmp / "killed.dtop"
    with SimLM(latency_scale=0.0) as sim:
        job = RecordJob(tmp, sim.base_url, env={"DSPY_TOP_RECORD": str(path)})
        try:
            made = job.run(10)  # 20 LM calls: their stats stored (one is once 5 calls came)

            def on_disk():
                with Recording(path) as recording:
                    end = recording.end_state()
                    return end if end.totals and end.totals["calls"] == made else None

            wait_until(on_disk, "the first calls on disk", timeout=30)
            # Two calls more: fewer than the writer waits for to store another stats, so the file's
            # last stats leaves them out (retried should a slow tick have stored one anyway).
            for _ in range(3):
                made = job.run(1)
                end = wait_until(on_disk, "the last calls on disk", timeout=30)
                if end.stats["totals"]["calls"] < made:
                    break
            job.proc.send_signal(signal.SIGKILL)
            job.proc.wait(10)
        finally:
            job.kill()
        served = sim.stats()
    with Recording(path) as recording:
        end = recording.end_state()
    assert not end.complete and not end.live
    return path, end.totals, end.stats["totals"], served


def test_the_killed_file_holds_calls_after_its_last_stats(killed):
    _, totals, last_stats, served = killed
    assert last_stats["calls"] < totals["calls"] == served["requests"]
    assert totals["prompt_tokens"] == served["prompt_tokens"]
    assert totals["completion_tokens"] == served["completion_tokens"]


def test_batch_end_state_equals_the_recordings_exact_totals(killed):
    path, totals, _, _ = killed
    done = subprocess.run(
        [sys.executable, "-m", "dspy_top", "replay", str(path), "-b", "-n", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    (snapshot,) = [json.loads(line) for line in done.stdout.splitlines()]
    for name in COUNTED:
        assert snapshot["totals"][name] == totals[name], name
    assert snapshot["totals"]["cost_usd"] == pytest.approx(totals["cost_usd"], abs=1e-12)
    (process,) = snapshot["processes"]
    assert process["calls"] == totals["calls"] and process["state"] == "lost"


def test_the_apps_end_state_equals_the_recordings_exact_totals(killed):
    path, totals, _, _ = killed
    source = RecordingSource([Recording(path)])
    fleet = Fleet(source.clock.now)
    app = ReplayApp(fleet, Collector(fleet, [source]), source, delay=3600, start_collector=False)

    async def main():
        async with app.run_test(size=(120, 40)) as pilot:
            for _ in range(400):
                if (
                    app.query(ReplayBar)
                    and app.snapshot.totals.calls == totals["calls"]
                    and source.caught_up()
                    and app._seek_started is None
                ):
                    break
                await pilot.pause(0.05)
            shown = app.snapshot.totals
            assert (shown.calls, shown.prompt_tokens, shown.completion_tokens, shown.cache_hits, shown.errors) == tuple(
                totals[name] for name in COUNTED
            )
            assert shown.cost_usd == pytest.approx(totals["cost_usd"], abs=1e-12)
            await pilot.pause(0.3)
            assert f"{totals['calls']:,} calls" in screen_text(app)
            await pilot.press("q")

    asyncio.run(main())
